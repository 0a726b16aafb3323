//! The built-in demo publisher (`[demo]`, on by default in development mode only): a small
//! fleet of simulated vehicles lapping a circuit, each stream its own topic —
//! `demo/vehicle/{id}/{speed,rpm,engine_temp,brake_temp,suspension,gps}` (best-effort JSON
//! samples at `demo.rate_hz`) and `demo/vehicle/{id}/events` (`reliable`: laps and alarms).
//! and synthetic video on [`VIDEO_TOPIC`] (a moving test pattern with the frame number and the
//! send time drawn in, one JPEG per message). A stream is published only while it has
//! subscribers and for [`LINGER_US`] after (so a viewer that drops and resumes misses nothing),
//! so an unwatched demo costs a timer tick and a map lookup per stream. [`Fleet`]
//! and [`TestPattern`] are the simulation, sans-IO: time is passed in.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::config::DemoConfig;
use crate::http::AppState;
use crate::hub::TopicName;
use crate::protocol::frame::FLAG_JSON;
use crate::transport::HubContext;

/// The video topic.
pub const VIDEO_TOPIC: &str = "demo/video/cam1";
/// Video frame size.
pub const VIDEO_SIZE: (u16, u16) = (640, 360);
/// JPEG quality of the video frames.
const JPEG_QUALITY: u8 = 80;

/// The telemetry streams of each vehicle.
pub const STREAMS: [&str; 6] = ["speed", "rpm", "engine_temp", "brake_temp", "suspension", "gps"];

/// Circuit length, metres.
const LAP_M: f64 = 4_200.0;
/// Circuit centre (a racetrack in the Ardennes) and half-axes in degrees of the ellipse the
/// GPS positions follow.
const CENTRE: (f64, f64) = (50.437, 5.971);
const AXES: (f64, f64) = (0.006, 0.011);

/// The topic of `stream` of vehicle `id`.
pub fn topic(id: u32, stream: &str) -> String {
    format!("demo/vehicle/{id}/{stream}")
}

/// A small deterministic generator (xorshift64*): the demo needs variety, not security.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[-1, 1)`.
    fn signed(&mut self) -> f64 {
        self.unit() * 2.0 - 1.0
    }
}

/// One simulated vehicle.
#[derive(Debug, Clone)]
struct Vehicle {
    id: u32,
    /// Metres into the current lap.
    at_m: f64,
    kmh: f64,
    engine_c: f64,
    brake_c: f64,
    lap: u32,
    lap_started_s: f64,
    /// How hard this driver pushes (0.9–1.0 of the section's speed).
    pace: f64,
    alarm: bool,
}

/// What one step produced: `(topic, JSON)` samples, events first.
pub type Samples = Vec<(String, Value)>;

/// The simulated fleet.
#[derive(Debug, Clone)]
pub struct Fleet {
    vehicles: Vec<Vehicle>,
    rng: Rng,
    /// Seconds since the start.
    clock_s: f64,
}

impl Fleet {
    /// `n` vehicles spread around the circuit; `seed` makes runs repeatable.
    pub fn new(n: u32, seed: u64) -> Self {
        let mut rng = Rng(seed | 1);
        let vehicles = (1..=n)
            .map(|id| Vehicle {
                id,
                at_m: LAP_M * f64::from(id - 1) / f64::from(n),
                kmh: 120.0,
                engine_c: 85.0,
                brake_c: 250.0,
                lap: 1,
                lap_started_s: 0.0,
                pace: 0.9 + 0.1 * rng.unit(),
                alarm: false,
            })
            .collect();
        Self { vehicles, rng, clock_s: 0.0 }
    }

    /// Advances `dt` seconds and returns every stream's sample (and any events), stamped
    /// `now_us` (µs since the UNIX epoch).
    pub fn step(&mut self, dt: f64, now_us: u64) -> Samples {
        self.clock_s += dt;
        let mut out = Vec::with_capacity(self.vehicles.len() * (STREAMS.len() + 1));
        for v in &mut self.vehicles {
            // The circuit's sections: straights near 300 km/h, corners down to 90.
            let phase = v.at_m / LAP_M * std::f64::consts::TAU;
            let target = v.pace * (195.0 + 105.0 * (3.0 * phase).cos().max(-0.8));
            let accel_kmh_s: f64 = if target > v.kmh { 28.0 } else { -55.0 };
            let prev = v.kmh;
            v.kmh = if (target - v.kmh).abs() <= accel_kmh_s.abs() * dt { target } else { v.kmh + accel_kmh_s * dt };
            v.kmh = (v.kmh + self.rng.signed() * 0.4).clamp(60.0, 330.0);
            let braking = v.kmh < prev - 0.5;
            let load = v.kmh / 330.0;
            let gear = (1.0 + v.kmh / 45.0).floor().min(8.0);
            let rpm = (4_000.0 + (v.kmh / gear) * 160.0 + self.rng.signed() * 60.0).clamp(3_500.0, 12_500.0);
            v.engine_c += (88.0 + 12.0 * load - v.engine_c) * (dt / 20.0) + self.rng.signed() * 0.05;
            v.brake_c += if braking { 900.0 * dt } else { -(v.brake_c - 200.0) * (dt / 4.0) };
            v.brake_c = v.brake_c.clamp(150.0, 1_000.0);
            let suspension_mm = 30.0 + 12.0 * (7.0 * phase).sin() * load + self.rng.signed() * 3.0;
            v.at_m += v.kmh / 3.6 * dt;
            let pos = v.at_m / LAP_M * std::f64::consts::TAU;
            let (lat, lon) = (CENTRE.0 + AXES.0 * pos.sin(), CENTRE.1 + AXES.1 * pos.cos());
            let id = v.id;
            if v.at_m >= LAP_M {
                v.at_m -= LAP_M;
                let lap_s = self.clock_s - v.lap_started_s;
                out.push((
                    topic(id, "events"),
                    json!({"t_us": now_us, "kind": "lap", "lap": v.lap, "lap_s": round(lap_s, 3)}),
                ));
                v.lap += 1;
                v.lap_started_s = self.clock_s;
            }
            let hot = v.brake_c > 900.0 || v.engine_c > 104.0;
            if hot != v.alarm {
                v.alarm = hot;
                let what = if v.brake_c > 900.0 { "brakes hot" } else { "engine hot" };
                let kind = if hot { "alarm" } else { "alarm_cleared" };
                out.push((topic(id, "events"), json!({"t_us": now_us, "kind": kind, "what": what})));
            }
            out.push((topic(id, "speed"), json!({"t_us": now_us, "kmh": round(v.kmh, 1), "gear": gear})));
            out.push((topic(id, "rpm"), json!({"t_us": now_us, "rpm": rpm.round()})));
            out.push((topic(id, "engine_temp"), json!({"t_us": now_us, "c": round(v.engine_c, 1)})));
            out.push((topic(id, "brake_temp"), json!({"t_us": now_us, "c": round(v.brake_c, 0)})));
            out.push((topic(id, "suspension"), json!({"t_us": now_us, "mm": round(suspension_mm, 1)})));
            out.push((topic(id, "gps"), json!({"t_us": now_us, "lat": round(lat, 6), "lon": round(lon, 6)})));
        }
        out
    }
}

/// A moving test pattern: colour bars scrolling sideways, a box circling, and a banner with the
/// frame number and the send time.
#[derive(Debug, Clone)]
pub struct TestPattern {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
}

/// The seven colour bars.
const BARS: [[u8; 3]; 7] =
    [[192, 192, 192], [192, 192, 0], [0, 192, 192], [0, 192, 0], [192, 0, 192], [192, 0, 0], [0, 0, 192]];

impl TestPattern {
    /// A pattern of `width` × `height` pixels.
    pub fn new(width: u16, height: u16) -> Self {
        let (width, height) = (usize::from(width), usize::from(height));
        Self { width, height, rgb: vec![0; width * height * 3] }
    }

    /// Frame `n`, sent at `now_us`, as RGB pixels.
    pub fn render(&mut self, n: u64, now_us: u64) -> &[u8] {
        let (w, h) = (self.width, self.height);
        let shift = (n as usize * 4) % w;
        for y in 0..h {
            for x in 0..w {
                let bar = BARS[((x + shift) % w) * BARS.len() / w];
                self.rgb[(y * w + x) * 3..][..3].copy_from_slice(&bar);
            }
        }
        // A box circling once every 4 s (at 30 fps).
        let angle = n as f64 / 120.0 * std::f64::consts::TAU;
        let (cx, cy) = (w as f64 / 2.0 + angle.cos() * w as f64 / 4.0, h as f64 / 2.0 + angle.sin() * h as f64 / 4.0);
        self.fill(cx as usize - 24, cy as usize - 24, 48, 48, [255, 255, 255]);
        self.fill(0, h - 40, w, 40, [0, 0, 0]);
        let text = format!("FRAME {n:08}  T {now_us}");
        // As large as fits the width (8×8 glyphs), centred in the 40-pixel band.
        let scale = ((w - 24) / (text.len() * 8)).clamp(1, 3);
        self.text(&text, 12, h - 20 - 4 * scale, scale, [255, 255, 255]);
        &self.rgb
    }

    fn fill(&mut self, x0: usize, y0: usize, fw: usize, fh: usize, c: [u8; 3]) {
        for y in y0.min(self.height)..(y0 + fh).min(self.height) {
            for x in x0.min(self.width)..(x0 + fw).min(self.width) {
                self.rgb[(y * self.width + x) * 3..][..3].copy_from_slice(&c);
            }
        }
    }

    /// Draws ASCII `text` with the 8×8 font, each font pixel `scale` pixels wide.
    fn text(&mut self, text: &str, x0: usize, y0: usize, scale: usize, c: [u8; 3]) {
        for (i, ch) in text.bytes().enumerate() {
            let glyph = font8x8::legacy::BASIC_LEGACY[usize::from(ch & 0x7f)];
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits >> col & 1 == 1 {
                        self.fill(x0 + (i * 8 + col) * scale, y0 + row * scale, scale, scale, c);
                    }
                }
            }
        }
    }

    /// Frame `n` as a JPEG.
    pub fn jpeg(&mut self, n: u64, now_us: u64) -> Vec<u8> {
        let (w, h) = (self.width as u16, self.height as u16);
        let rgb = self.render(n, now_us);
        let mut out = Vec::with_capacity(64 * 1024);
        jpeg_encoder::Encoder::new(&mut out, JPEG_QUALITY)
            .encode(rgb, w, h, jpeg_encoder::ColorType::Rgb)
            .expect("a whole RGB frame encodes");
        out
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

/// How long a stream goes on being published after its last subscriber left, µs: a viewer whose
/// connection drops and comes back within this finds what it missed in the stream's history.
pub const LINGER_US: u64 = 30_000_000;

/// Which streams to publish: those watched now or within the last [`LINGER_US`]. Sans-IO.
#[derive(Debug, Default)]
pub struct Linger {
    /// Stream → when it was last seen watched, µs.
    last_watched: std::collections::HashMap<String, u64>,
}

impl Linger {
    /// Whether to publish `stream` at `now_us`, given whether it has subscribers now.
    pub fn publish(&mut self, stream: &str, watched: bool, now_us: u64) -> bool {
        if watched {
            match self.last_watched.get_mut(stream) {
                Some(t) => *t = now_us,
                None => {
                    self.last_watched.insert(stream.to_owned(), now_us);
                }
            }
            return true;
        }
        match self.last_watched.get(stream) {
            Some(&t) if now_us.saturating_sub(t) < LINGER_US => true,
            Some(_) => {
                self.last_watched.remove(stream);
                false
            }
            None => false,
        }
    }
}

/// Whether `topic` has subscribers on this node.
fn watched(ctx: &HubContext, topic: &TopicName) -> bool {
    ctx.manager.topic_info(topic).is_some_and(|t| t.subscribers > 0)
}

/// Publishes the video while it is watched, until the server shuts down.
async fn video(ctx: Arc<HubContext>, fps: u32) {
    let topic = TopicName::new(VIDEO_TOPIC).expect("a valid topic");
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(fps)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut pattern = Some(TestPattern::new(VIDEO_SIZE.0, VIDEO_SIZE.1));
    let mut shutdown = ctx.shutdown.clone();
    for n in 0u64.. {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if !watched(&ctx, &topic) {
            continue;
        }
        // A few ms of CPU per frame: off the async workers.
        let now_us = ctx.clock.now().unix_us as u64;
        let mut p = pattern.take().expect("returned after every frame");
        let Ok((p, frame)) = tokio::task::spawn_blocking(move || {
            let frame = p.jpeg(n, now_us);
            (p, frame)
        })
        .await
        else {
            return;
        };
        pattern = Some(p);
        if let Err(e) = crate::transport::publish::publish(&ctx, &topic, &frame, 0).await {
            tracing::debug!(%e, "demo video publish failed");
        }
    }
}

/// What the demo publishes, for the demo pages (`GET /v1/demo`, served while the demo runs).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DemoInfo {
    /// Vehicle ids, `1..=demo.vehicles`.
    pub vehicles: Vec<u32>,
    /// Each vehicle's telemetry streams: topic `demo/vehicle/{id}/{stream}`, best-effort JSON.
    pub streams: Vec<&'static str>,
    /// Samples per second of each stream.
    pub rate_hz: u32,
    /// A vehicle's events (laps, alarms), `reliable`: `demo/vehicle/{id}/events`.
    pub events: &'static str,
    /// The video topic (absent when `demo.video_fps` is 0).
    pub video_topic: Option<&'static str>,
    /// Video frames per second.
    pub video_fps: u32,
    /// Video frame size, pixels.
    pub video_width: u16,
    /// Video frame height, pixels.
    pub video_height: u16,
}

/// The demo publisher's topics and rates (served only while it runs: development mode).
#[utoipa::path(get, path = "/v1/demo", responses((status = 200, body = DemoInfo)))]
pub async fn describe(State(s): State<AppState>) -> Json<DemoInfo> {
    let cfg = &s.ctx.config.demo;
    Json(DemoInfo {
        vehicles: (1..=cfg.vehicles).collect(),
        streams: STREAMS.to_vec(),
        rate_hz: cfg.rate_hz,
        events: "events",
        video_topic: (cfg.video_fps > 0).then_some(VIDEO_TOPIC),
        video_fps: cfg.video_fps,
        video_width: VIDEO_SIZE.0,
        video_height: VIDEO_SIZE.1,
    })
}

/// Runs the demo publisher until the server shuts down.
pub async fn run(ctx: Arc<HubContext>, cfg: DemoConfig) {
    let video = async {
        if cfg.video_fps > 0 {
            video(ctx.clone(), cfg.video_fps).await;
        }
    };
    tokio::join!(telemetry(ctx.clone(), &cfg), video);
}

/// Publishes the fleet's streams while watched (events always), until the server shuts down.
async fn telemetry(ctx: Arc<HubContext>, cfg: &DemoConfig) {
    let dt = 1.0 / f64::from(cfg.rate_hz);
    let mut fleet = Fleet::new(cfg.vehicles, ctx.clock.now().unix_us as u64);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(dt));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut shutdown = ctx.shutdown.clone();
    let mut linger = Linger::default();
    tracing::info!(
        vehicles = cfg.vehicles,
        rate_hz = cfg.rate_hz,
        "demo publisher on demo/vehicle/… (development mode)"
    );
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now_us = ctx.clock.now().unix_us as u64;
        for (name, sample) in fleet.step(dt, now_us) {
            let Ok(topic) = TopicName::new(&name) else { continue };
            // Events always (rare; kept for late subscribers); streams while watched, and for
            // a while after.
            if !name.ends_with("/events") && !linger.publish(&name, watched(&ctx, &topic), now_us) {
                continue;
            }
            let payload = sample.to_string();
            if let Err(e) = crate::transport::publish::publish(&ctx, &topic, payload.as_bytes(), FLAG_JSON).await {
                tracing::debug!(%name, %e, "demo publish failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(samples: &Samples, stream: &str, field: &str) -> Vec<f64> {
        samples
            .iter()
            .filter(|(t, _)| t.ends_with(&format!("/{stream}")))
            .filter_map(|(_, v)| v[field].as_f64())
            .collect()
    }

    #[test]
    fn ten_simulated_minutes_stay_in_realistic_ranges_and_complete_laps() {
        let mut fleet = Fleet::new(3, 42);
        let mut all = Vec::new();
        for i in 0..(10 * 60 * 20) {
            all.extend(fleet.step(0.05, i * 50_000));
        }
        let kmh = values(&all, "speed", "kmh");
        assert_eq!(kmh.len(), 3 * 12_000, "one speed sample per vehicle per step");
        assert!(kmh.iter().all(|&v| (60.0..=330.0).contains(&v)));
        let (lo, hi) = kmh.iter().fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        assert!(lo < 130.0 && hi > 250.0, "corners and straights: {lo}..{hi}");
        assert!(values(&all, "rpm", "rpm").iter().all(|&v| (3_500.0..=12_500.0).contains(&v)));
        assert!(values(&all, "engine_temp", "c").iter().all(|&v| (70.0..=110.0).contains(&v)));
        assert!(values(&all, "brake_temp", "c").iter().all(|&v| (150.0..=1_000.0).contains(&v)));
        let laps: Vec<f64> = all
            .iter()
            .filter(|(t, v)| t == "demo/vehicle/1/events" && v["kind"] == "lap")
            .map(|(_, v)| v["lap_s"].as_f64().unwrap())
            .collect();
        // 4.2 km at an average near 200 km/h: about 75 s a lap.
        assert!(laps.len() >= 5, "{laps:?}");
        assert!(laps[1..].iter().all(|&s| (50.0..=110.0).contains(&s)), "{laps:?}");
        let gps = all.iter().find(|(t, _)| t == "demo/vehicle/2/gps").unwrap();
        assert!((gps.1["lat"].as_f64().unwrap() - CENTRE.0).abs() < 0.01);
    }

    #[test]
    fn video_frames_are_jpegs_of_tens_of_kib_that_change_from_frame_to_frame() {
        let mut p = TestPattern::new(VIDEO_SIZE.0, VIDEO_SIZE.1);
        let a = p.jpeg(1, 1_000_000);
        let b = p.jpeg(2, 1_033_333);
        for f in [&a, &b] {
            assert_eq!(&f[..2], [0xFF, 0xD8], "JPEG start of image");
            assert_eq!(&f[f.len() - 2..], [0xFF, 0xD9], "JPEG end of image");
            assert!((8 * 1024..200 * 1024).contains(&f.len()), "{} bytes", f.len());
        }
        assert_ne!(a, b);
        // The banner carries the frame number: white pixels where "FRAME 00000001" is drawn.
        let rgb = p.render(1, 1).to_vec();
        let lit = rgb.chunks(3).filter(|px| px == &[255, 255, 255]).count();
        assert!(lit > 48 * 48, "the box and the text: {lit} white pixels");
    }

    #[test]
    fn a_stream_is_published_while_watched_and_for_the_linger_time_after() {
        let mut l = Linger::default();
        assert!(!l.publish("a", false, 0), "never watched");
        assert!(l.publish("a", true, 1_000));
        assert!(l.publish("a", false, 1_000 + LINGER_US - 1), "within the linger time");
        assert!(!l.publish("a", false, 1_000 + LINGER_US), "linger time over");
        assert!(!l.publish("a", false, 2_000 + LINGER_US), "and forgotten");
        assert!(l.last_watched.is_empty());
        assert!(l.publish("a", true, 5 * LINGER_US));
        assert!(!l.publish("b", false, 5 * LINGER_US), "per stream");
    }

    #[test]
    fn the_same_seed_gives_the_same_run() {
        let (mut a, mut b) = (Fleet::new(2, 7), Fleet::new(2, 7));
        for i in 0..100 {
            assert_eq!(a.step(0.02, i), b.step(0.02, i));
        }
    }
}
