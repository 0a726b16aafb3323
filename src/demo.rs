//! The built-in demo publisher (`[demo]`, on by default in development mode only): a small
//! fleet of simulated vehicles lapping a circuit, each stream its own topic —
//! `demo/vehicle/{id}/{speed,rpm,engine_temp,brake_temp,suspension,gps}` (best-effort JSON
//! samples at `demo.rate_hz`) and `demo/vehicle/{id}/events` (`reliable`: laps and alarms).
//! A stream is published only while it has subscribers, so an unwatched demo costs a timer
//! tick and a map lookup per stream. [`Fleet`] is the simulation, sans-IO: time is passed in.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::config::DemoConfig;
use crate::hub::TopicName;
use crate::protocol::frame::FLAG_JSON;
use crate::transport::HubContext;

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

fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

/// Runs the demo publisher until the server shuts down.
pub async fn run(ctx: Arc<HubContext>, cfg: DemoConfig) {
    let dt = 1.0 / f64::from(cfg.rate_hz);
    let mut fleet = Fleet::new(cfg.vehicles, ctx.clock.now().unix_us as u64);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(dt));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut shutdown = ctx.shutdown.clone();
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
            // Events always (rare; kept for late subscribers); streams only while watched.
            let watched = ctx.manager.topic_info(&topic).is_some_and(|t| t.subscribers > 0);
            if !name.ends_with("/events") && !watched {
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
    fn the_same_seed_gives_the_same_run() {
        let (mut a, mut b) = (Fleet::new(2, 7), Fleet::new(2, 7));
        for i in 0..100 {
            assert_eq!(a.step(0.02, i), b.step(0.02, i));
        }
    }
}
