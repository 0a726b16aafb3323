//! The PostgreSQL outbox source against real PostgreSQL: rows reach WebSocket subscribers in
//! order with their upstream position, a notification alone wakes the consumer; an upstream
//! kill and a hub restart lose and repeat nothing; a stalled mapping does not hold up the
//! others; poison goes to the dead letter; an unreachable upstream leaves the node serving; of
//! two hubs on one outbox only one consumes, and the other takes over when it stops.
//!
//! Tests that kill the upstream run a private server (`initdb` into a temporary directory, as
//! the `postgres` user when run as root); the others use a database of their own on the local
//! server (`127.0.0.1:5432`, user `postgres`, trust).

use std::path::PathBuf;
use std::time::Duration;

use fanhub::config::{BackpressureMode, ConsumerSettings, MappingConfig, SourceConfig};
use serde_json::{json, Value};
use tokio_postgres::NoTls;

use crate::common::*;

/// The PostgreSQL server binaries: `FANHUB_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`
/// (Debian's layout).
fn pg_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("FANHUB_PG_BIN") {
        return dir.into();
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's server binaries under /usr/lib/postgresql (or FANHUB_PG_BIN)")
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().expect("a PostgreSQL with initdb under /usr/lib/postgresql").1
}

fn source(url: &str, mappings: Vec<MappingConfig>) -> SourceConfig {
    source_of("postgres", url, "table = \"outbox\"\nchannel = \"outbox_rows\"\npoll_interval_ms = 200", mappings)
}

/// The outbox, its notification trigger, as an application creates them.
const SCHEMA: &str = "
    CREATE TABLE outbox (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        topic text NOT NULL,
        key text,
        headers jsonb,
        payload bytea NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now());
    CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN PERFORM pg_notify('outbox_rows', ''); RETURN NULL; END $$;
    CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();";

async fn pg(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.expect("connect to PostgreSQL");
    tokio::spawn(conn);
    client
}

/// Inserts `{"n": n}` rows for `topic` (key `k<n>`, a `trace` header); returns their ids.
async fn insert(db: &tokio_postgres::Client, topic: &str, ns: std::ops::Range<u64>) -> Vec<i64> {
    let mut ids = Vec::new();
    for n in ns {
        let payload = json!({ "n": n }).to_string().into_bytes();
        let row = db
            .query_one(
                "INSERT INTO outbox (topic, key, headers, payload) VALUES ($1, $2, $3::text::jsonb, $4) RETURNING id",
                &[&topic, &format!("k{n}"), &r#"{"trace":"t"}"#, &payload],
            )
            .await
            .unwrap();
        ids.push(row.get(0));
    }
    ids
}

async fn insert_raw(db: &tokio_postgres::Client, topic: &str, payload: &[u8]) -> i64 {
    let row = db
        .query_one("INSERT INTO outbox (topic, payload) VALUES ($1, $2) RETURNING id", &[&topic, &payload])
        .await
        .unwrap();
    row.get(0)
}

/// The committed cursor of the shared consumer's mapping `upstream`.
async fn cursor(db: &tokio_postgres::Client, upstream: &str) -> Option<i64> {
    let key = format!("fanhub.fleet {upstream}");
    db.query_opt("SELECT last_id FROM fanhub_source_cursor WHERE source = 'fleet' AND consumer = $1", &[&key])
        .await
        .unwrap()
        .map(|r| r.get(0))
}

/// The hub's logs on the test's output when `RUST_LOG` is set.
fn logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let filter = tracing_subscriber::EnvFilter::from_default_env();
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
}

/// Runs a PostgreSQL binary (as the `postgres` user when this is root: the server refuses root).
fn pg_command(bin: &str) -> tokio::process::Command {
    let path = pg_bin().join(bin);
    let root = std::process::Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
    let mut cmd = if root {
        let mut c = tokio::process::Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&path);
        c
    } else {
        tokio::process::Command::new(path)
    };
    cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    cmd
}

async fn run_ok(mut cmd: tokio::process::Command, what: &str) {
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output()).await.expect(what).expect(what);
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A private PostgreSQL on a free loopback port, its data in a temporary directory. `kill`
/// stops it the way a crash does (`-m immediate`); `start` runs it again on the same port with
/// its data.
struct PgServer {
    port: u16,
    dir: PathBuf,
    running: bool,
}

impl PgServer {
    async fn start() -> PgServer {
        let mut s = PgServer::not_started().await;
        s.run().await;
        let db = pg(&s.url()).await;
        db.batch_execute(SCHEMA).await.unwrap();
        s
    }

    /// Initialized, not running (on a port nothing listens on).
    async fn not_started() -> PgServer {
        let port = free_port();
        let dir = scratch_dir("pg", port);
        let _ = std::process::Command::new("chown").args(["postgres", &dir.to_string_lossy()]).status();
        let mut init = pg_command("initdb");
        init.arg("-D").arg(dir.join("data")).args(["-A", "trust", "-U", "postgres", "-N", "--no-instructions"]);
        run_ok(init, "initdb").await;
        PgServer { port, dir, running: false }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    async fn run(&mut self) {
        let mut start = pg_command("pg_ctl");
        let opts = format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.dir.display());
        start.arg("-D").arg(self.dir.join("data")).args(["-o", &opts, "-l"]).arg(self.dir.join("log"));
        start.args(["-w", "-t", "30", "start"]);
        run_ok(start, "pg_ctl start").await;
        self.running = true;
    }

    /// Kills the server (no shutdown checkpoint: what it had committed is in its WAL).
    async fn kill(&mut self) {
        let mut stop = pg_command("pg_ctl");
        stop.arg("-D").arg(self.dir.join("data")).args(["-m", "immediate", "-w", "stop"]);
        run_ok(stop, "pg_ctl stop").await;
        self.running = false;
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.running {
            let _ = std::process::Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(pg_bin().join("pg_ctl"))
                .arg("-D")
                .arg(self.dir.join("data"))
                .args(["-m", "immediate", "stop"])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A database of its own on the local PostgreSQL, with the outbox; dropped with the value.
struct TestDb {
    name: String,
}

impl TestDb {
    async fn create() -> TestDb {
        let name = format!("fanhub_test_{}_{}", std::process::id(), rand::random::<u32>());
        let admin = pg("postgres://postgres@127.0.0.1:5432/postgres").await;
        admin.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("the local PostgreSQL");
        let db = TestDb { name };
        pg(&db.url()).await.batch_execute(SCHEMA).await.unwrap();
        db
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.name)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc"])
            .arg(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .output();
    }
}

#[tokio::test]
async fn outbox_rows_reach_websocket_subscribers_in_order_and_a_notification_alone_wakes_the_consumer() {
    logs();
    let pgdb = TestDb::create().await;
    let db = pg(&pgdb.url()).await;
    let mut ids = insert(&db, "telemetry.car-1", 0..20).await;
    // A row no mapping takes: skipped, and the cursor moves past it.
    insert_raw(&db, "other", b"{}").await;
    let mut config = resumable_config();
    let mut s = source(&pgdb.url(), vec![mapping("telemetry.{device}", "rel/telemetry/{device}")]);
    // Only a notification can make the consumer read again within the test.
    s.poll_interval_ms = 3_600_000;
    config.sources = vec![s];
    let hub = spawn_hub(config).await;
    until(&hub, "the first 20 published", |v| mapping_view(v, 0)["published"] == 20).await;

    let mut sub = hub.connect("sub").await;
    sub.subscribe_from("rel/telemetry/car-1", 1).await;
    ids.extend(insert(&db, "telemetry.car-1", 20..40).await);
    let got = sub.records(40).await;
    assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), (1..=40).collect::<Vec<_>>());
    assert_eq!(got.iter().map(n_of).collect::<Vec<_>>(), (0..40).collect::<Vec<_>>());
    for ((r, id), n) in got.iter().zip(&ids).zip(0..) {
        assert_eq!(r.flags & 0x01, 0x01, "JSON payloads are flagged JSON");
        assert_eq!(
            r.meta.as_ref().unwrap(),
            &json!({"source":"fleet","upstream":"telemetry.car-1","partition":"outbox",
                    "position": id.to_string(),"key": format!("k{n}"),"headers":{"trace":"t"}})
        );
    }
    let v = until(&hub, "every row committed", |v| mapping_view(v, 0)["commits"] == 40).await;
    let m = mapping_view(&v, 0);
    assert_eq!(m["received"].as_u64(), Some(40), "{m:#}");
    assert_eq!(v["items"][0]["consumers"][0]["state"], "connected");
    assert_eq!(cursor(&db, "telemetry.{device}").await, Some(*ids.last().unwrap()), "the cursor is the last id");
    until(&hub, "no lag", |v| mapping_view(v, 0)["lag"] == 0).await;
    let health = http(hub.addr, "GET", "/readyz", &[], "").await;
    assert_eq!(health.json()["sources"]["not_connected"], json!([]));
    let metrics = admin(&hub, "GET", "/metrics", "").await.body;
    assert!(
        metrics.contains(r#"fanhub_source_published_total{source="fleet",mapping="telemetry.{device}"} 40"#),
        "{metrics}"
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn an_upstream_kill_mid_stream_loses_nothing_and_repeats_nothing() {
    logs();
    let mut server = PgServer::start().await;
    let db = pg(&server.url()).await;
    let mut config = resumable_config();
    config.sources = vec![source(&server.url(), vec![mapping("orders", "rel/orders")])];
    let hub = spawn_hub(config).await;
    until(&hub, "connected", |v| v["items"][0]["connected"] == true).await;
    let mut sub = hub.connect("sub").await;
    sub.subscribe("rel/orders").await;
    insert(&db, "orders", 0..100).await;
    let first = sub.records(50).await;
    server.kill().await;
    drop(db);
    server.run().await;
    let db = pg(&server.url()).await;
    insert(&db, "orders", 100..200).await;
    let mut got = first;
    got.extend(sub.records(150).await);
    assert_eq!(got.iter().map(n_of).collect::<Vec<_>>(), (0..200).collect::<Vec<_>>());
    assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), (1..=200).collect::<Vec<_>>());
    let v = until(&hub, "all committed", |v| mapping_view(v, 0)["commits"] == 200).await;
    assert!(v["items"][0]["consumers"][0]["failures"].as_u64().unwrap() >= 1, "{v:#}");
    assert_eq!(mapping_view(&v, 0)["published"], 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(sub.buffered_records().is_empty(), "no duplicate after the restart");
    hub.shutdown().await;
}

#[tokio::test]
async fn a_restarted_hub_resumes_after_the_committed_cursor() {
    logs();
    let pgdb = TestDb::create().await;
    let db = pg(&pgdb.url()).await;
    let mut config = resumable_config();
    config.sources = vec![source(&pgdb.url(), vec![mapping("orders", "rel/orders")])];
    let ids = insert(&db, "orders", 0..30).await;
    let hub = spawn_hub(config.clone()).await;
    until(&hub, "30 published", |v| mapping_view(v, 0)["published"] == 30).await;
    hub.shutdown().await;
    assert_eq!(cursor(&db, "orders").await, Some(ids[29]), "a clean stop commits what it published");
    insert(&db, "orders", 30..60).await;
    let hub = spawn_hub(config).await;
    until(&hub, "the 30 new ones published", |v| mapping_view(v, 0)["published"] == 30).await;
    let mut sub = hub.connect("sub").await;
    sub.subscribe_from("rel/orders", 1).await;
    let got = sub.records(30).await;
    assert_eq!(got.iter().map(n_of).collect::<Vec<_>>(), (30..60).collect::<Vec<_>>());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(sub.buffered_records().is_empty(), "nothing published twice");
    hub.shutdown().await;
}

/// What [`stalled_mapping`] leaves: the admin view, what the fast mapping delivered, its
/// cursor, and the hub with the stalled subscriber (not reading yet).
struct Stalled {
    view: Value,
    fast: Vec<Record>,
    fast_cursor: Option<i64>,
    stalled: Client,
    hub: Hub,
    db: tokio_postgres::Client,
    _pgdb: TestDb,
}

/// Two mappings; `slow/…` has a subscriber that reads nothing on a `reliable` +
/// `apply_backpressure` topic, so the hub cannot take its records.
async fn stalled_mapping(mode: BackpressureMode, exclusive: bool) -> Stalled {
    let pgdb = TestDb::create().await;
    let db = pg(&pgdb.url()).await;
    let (hub, stalled, mut fast) =
        stalled_hub(mode, exclusive.then(ConsumerSettings::default), |m| source(&pgdb.url(), m)).await;
    for n in 0..300 {
        insert_raw(&db, "slow", &stalled_payload(n)).await;
    }
    until_stuck(&hub).await;
    insert(&db, "fast", 0..200).await;
    let got = fast.records(200).await;
    let view = until_lag_measured(&hub, mode).await;
    let fast_cursor = cursor(&db, "fast").await;
    Stalled { view, fast: got, fast_cursor, stalled, hub, db, _pgdb: pgdb }
}

#[tokio::test]
async fn a_stalled_mapping_under_apply_backpressure_pauses_alone_and_the_other_keeps_flowing() {
    logs();
    let s = stalled_mapping(BackpressureMode::ApplyBackpressure, false).await;
    assert_eq!(s.fast.iter().map(n_of).collect::<Vec<_>>(), (0..200).collect::<Vec<_>>());
    let slow = mapping_view(&s.view, 0);
    assert_eq!(slow["paused"], true, "{slow:#}");
    assert!(slow["pauses"].as_u64().unwrap() >= 1);
    assert_eq!(slow["dropped"], json!({"drop_oldest":0,"drop_newest":0,"duplicate":0,"dead_letter":0}));
    assert!(slow["received"].as_u64().unwrap() < 300, "the paused mapping's rows are held: {slow:#}");
    assert!(slow["lag"].as_u64().unwrap() > 0, "{slow:#}");
    // The fast mapping's cursor went past the slow one's held rows; the slow one's did not.
    assert!(s.fast_cursor.unwrap() > 300, "{:?}", s.fast_cursor);
    assert!(cursor(&s.db, "slow").await.unwrap() < 300);
    drop(s.stalled);
    s.hub.shutdown().await;
}

#[tokio::test]
async fn a_stalled_mapping_that_reads_again_gets_every_held_row_once_in_order() {
    logs();
    let mut s = stalled_mapping(BackpressureMode::ApplyBackpressure, false).await;
    // The slow subscriber reads: the held rows are read again from the hole, in order.
    let got = s.stalled.records(300).await;
    assert_eq!(got.iter().map(n_of).collect::<Vec<_>>(), (0..300).collect::<Vec<_>>());
    let v = until(&s.hub, "the slow mapping committed", |v| mapping_view(v, 0)["commits"] == 300).await;
    let slow = mapping_view(&v, 0);
    assert_eq!((slow["received"].as_u64(), slow["published"].as_u64()), (Some(300), Some(300)), "{slow:#}");
    assert_eq!(slow["dropped"]["duplicate"], 0);
    // Its cursor is past its own rows and the fast mapping's after them.
    let last: i64 = s.db.query_one("SELECT max(id) FROM outbox", &[]).await.unwrap().get(0);
    assert_eq!(cursor(&s.db, "slow").await, Some(last));
    until(&s.hub, "no lag", |v| mapping_view(v, 0)["lag"] == 0 && mapping_view(v, 1)["lag"] == 0).await;
    s.hub.shutdown().await;
}

#[tokio::test]
async fn a_stalled_mapping_under_drop_oldest_drops_and_counts_and_the_other_keeps_flowing() {
    logs();
    let s = stalled_mapping(BackpressureMode::DropOldest, false).await;
    assert_eq!(s.fast.iter().map(n_of).collect::<Vec<_>>(), (0..200).collect::<Vec<_>>());
    let slow = mapping_view(&s.view, 0);
    assert!(slow["dropped"]["drop_oldest"].as_u64().unwrap() > 0, "{slow:#}");
    assert_eq!(slow["paused"], false);
    assert_eq!(slow["received"], 300, "a drop mode takes every row: {slow:#}");
    drop(s.stalled);
    s.hub.shutdown().await;
}

#[tokio::test]
async fn a_stalled_mapping_with_an_exclusive_consumer_is_isolated() {
    logs();
    let s = stalled_mapping(BackpressureMode::ApplyBackpressure, true).await;
    assert_eq!(s.fast.iter().map(n_of).collect::<Vec<_>>(), (0..200).collect::<Vec<_>>());
    let consumers = &s.view["items"][0]["consumers"];
    assert_eq!(consumers.as_array().unwrap().len(), 2, "{consumers:#}");
    assert_eq!(consumers[1]["exclusive_mapping"], 0);
    assert_eq!(consumers[1]["group"], "fanhub.fleet.0");
    assert_eq!(mapping_view(&s.view, 0)["paused"], true);
    // Its own consumer: its own cursor row and lock.
    let own: i64 =
        s.db.query_one("SELECT count(*) FROM fanhub_source_cursor WHERE consumer = 'fanhub.fleet.0 slow'", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(own, 1);
    drop(s.stalled);
    s.hub.shutdown().await;
}

#[tokio::test]
async fn a_poison_row_goes_to_the_dead_letter_counted_and_the_stream_continues() {
    logs();
    let pgdb = TestDb::create().await;
    let db = pg(&pgdb.url()).await;
    let mut config = test_config();
    let mut m = mapping("events", "events/all");
    m.payload_field = Some("/data".into());
    let mut s = source(&pgdb.url(), vec![m]);
    s.dead_letter = Some("dead/fleet".into());
    config.sources = vec![s];
    let hub = spawn_hub(config).await;
    until(&hub, "connected", |v| v["items"][0]["connected"] == true).await;
    let mut sub = hub.connect("sub").await;
    sub.subscribe("events/all").await;
    let mut dead = hub.connect("dead").await;
    dead.subscribe("dead/fleet").await;
    insert_raw(&db, "events", br#"{"data":{"n":1}}"#).await;
    let bad = insert_raw(&db, "events", b"not json").await;
    let last = insert_raw(&db, "events", br#"{"data":{"n":2}}"#).await;
    let got = sub.records(2).await;
    assert_eq!(
        got.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(),
        [br#"{"n":1}"#.to_vec(), br#"{"n":2}"#.to_vec()]
    );
    let d = dead.next_record().await;
    assert_eq!(d.payload, b"not json");
    let meta = d.meta.unwrap();
    assert_eq!(
        (meta["reason"].as_str(), meta["position"].as_str()),
        (Some("payload_field"), Some(bad.to_string().as_str()))
    );
    assert!(meta["error"].as_str().unwrap().contains("not JSON"), "{meta}");
    let v = until(&hub, "all three committed", |v| mapping_view(v, 0)["commits"] == 3).await;
    assert_eq!(mapping_view(&v, 0)["dropped"]["dead_letter"], 1);
    assert_eq!(cursor(&db, "events").await, Some(last));
    hub.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_upstream_at_start_leaves_the_node_serving_and_readiness_names_it() {
    logs();
    let mut server = PgServer::not_started().await;
    let mut config = resumable_config();
    config.sources = vec![source(&server.url(), vec![mapping("orders", "rel/orders")])];
    let hub = spawn_hub(config).await;
    let v = until(&hub, "a failed attempt", |v| v["items"][0]["consumers"][0]["failures"].as_u64() > Some(0)).await;
    let c = &v["items"][0]["consumers"][0];
    assert_eq!(c["state"], "retrying");
    assert!(c["error"].as_str().unwrap().to_lowercase().contains("refused"), "{c:#}");
    let ready = http(hub.addr, "GET", "/readyz", &[], "").await;
    assert_eq!(ready.status, 200, "the node serves without its upstream");
    assert_eq!(ready.json()["sources"]["not_connected"], json!(["fleet"]));
    let mut sub = hub.connect("sub").await;
    sub.subscribe("rel/orders").await;
    server.run().await;
    let db = pg(&server.url()).await;
    db.batch_execute(SCHEMA).await.unwrap();
    until(&hub, "connected", |v| v["items"][0]["connected"] == true).await;
    insert(&db, "orders", 0..10).await;
    let got = sub.records(10).await;
    assert_eq!(got.iter().map(n_of).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
    hub.shutdown().await;
}

#[tokio::test]
async fn of_two_hubs_on_one_outbox_one_consumes_and_the_other_takes_over_when_it_stops() {
    logs();
    let pgdb = TestDb::create().await;
    let db = pg(&pgdb.url()).await;
    let mut config = resumable_config();
    config.sources = vec![source(&pgdb.url(), vec![mapping("orders", "rel/orders")])];
    let a = spawn_hub(config.clone()).await;
    until(&a, "the first hub connected", |v| v["items"][0]["connected"] == true).await;
    let b = spawn_hub(config).await;
    let v = until(&b, "the second hub refused the lock", |v| v["items"][0]["consumers"][0]["state"] == "standby").await;
    let c = &v["items"][0]["consumers"][0];
    let ready = http(b.addr, "GET", "/readyz", &[], "").await;
    assert_eq!(ready.json()["sources"]["not_connected"], serde_json::json!([]), "a standby is not a fault");
    assert!(c["error"].as_str().unwrap().contains("another node holds the outbox lock"), "{c:#}");
    let mut sub_a = a.connect("sub").await;
    sub_a.subscribe("rel/orders").await;
    let mut sub_b = b.connect("sub").await;
    sub_b.subscribe("rel/orders").await;
    insert(&db, "orders", 0..50).await;
    let got_a = sub_a.records(50).await;
    assert_eq!(got_a.iter().map(n_of).collect::<Vec<_>>(), (0..50).collect::<Vec<_>>());
    assert_eq!(sources(&b).await["items"][0]["mappings"][0]["received"], 0, "the second hub reads nothing");
    // The first stops (its session and lock go); rows keep coming.
    a.shutdown().await;
    insert(&db, "orders", 50..100).await;
    until(&b, "the second hub took over", |v| v["items"][0]["consumers"][0]["state"] == "connected").await;
    let got_b = sub_b.records(50).await;
    assert_eq!(got_b.iter().map(n_of).collect::<Vec<_>>(), (50..100).collect::<Vec<_>>());
    until(&b, "all committed", |v| mapping_view(v, 0)["commits"] == 50).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(sub_b.buffered_records().is_empty(), "nothing the first hub published comes again");
    b.shutdown().await;
}

/// A fresh database, a connection to it, a hub consuming its outbox's `orders` rows into the
/// reliable `rel/orders`, and a subscriber of that topic.
async fn orders_hub() -> (TestDb, tokio_postgres::Client, Hub, Client) {
    logs();
    let pgdb = TestDb::create().await;
    let db = pg(&pgdb.url()).await;
    let mut config = resumable_config();
    config.sources = vec![source(&pgdb.url(), vec![mapping("orders", "rel/orders")])];
    let hub = spawn_hub(config).await;
    until(&hub, "connected", |v| v["items"][0]["connected"] == true).await;
    let mut sub = hub.connect("sub").await;
    sub.subscribe("rel/orders").await;
    (pgdb, db, hub, sub)
}

#[tokio::test]
async fn a_row_committed_after_a_higher_id_is_waited_for_not_skipped() {
    let (pgdb, db, hub, mut sub) = orders_hub().await;
    // The lower id's transaction stays open while a higher id commits.
    let mut slow = pg(&pgdb.url()).await;
    let tx = slow.transaction().await.unwrap();
    let low: i64 = tx
        .query_one("INSERT INTO outbox (topic, payload) VALUES ('orders', '{\"n\":0}') RETURNING id", &[])
        .await
        .unwrap()
        .get(0);
    insert(&db, "orders", 1..2).await;
    // The hub has seen the higher row for a while (it counts in the lag) and published nothing.
    let v = until(&hub, "the higher row counted", |v| mapping_view(v, 0)["lag"].as_u64() > Some(0)).await;
    assert_eq!(mapping_view(&v, 0)["received"], 0, "the scan waits at the gap: {v:#}");
    tx.commit().await.unwrap();
    let got = sub.records(2).await;
    assert_eq!(got.iter().map(n_of).collect::<Vec<_>>(), [0, 1], "in id order, nothing lost");
    assert_eq!(got[0].meta.as_ref().unwrap()["position"], low.to_string());
    until(&hub, "both committed", |v| mapping_view(v, 0)["commits"] == 2).await;
    hub.shutdown().await;
}

#[tokio::test]
async fn rows_of_concurrent_writers_committed_out_of_order_come_in_id_order_and_a_rolled_back_id_is_passed() {
    let (pgdb, db, hub, mut sub) = orders_hub().await;
    // Five writers take ids 0..5 in order and hold their transactions open; a sixth row commits
    // above them. Then they end out of order, and writer 2 rolls back: ids 0..5 but 2 come, in
    // id order, after several gaps below the highest id the scan saw.
    let mut writers = Vec::new();
    for _ in 0..5 {
        writers.push(pg(&pgdb.url()).await);
    }
    let mut txs = Vec::new();
    for (n, w) in writers.iter_mut().enumerate() {
        let tx = w.transaction().await.unwrap();
        let payload = format!("{{\"n\":{n}}}");
        tx.execute("INSERT INTO outbox (topic, payload) VALUES ('orders', $1::text::bytea)", &[&payload])
            .await
            .unwrap();
        txs.push(Some(tx));
    }
    insert(&db, "orders", 5..6).await;
    until(&hub, "the committed row counted", |v| mapping_view(v, 0)["lag"].as_u64() > Some(0)).await;
    for i in [3, 1, 4, 0] {
        txs[i].take().unwrap().commit().await.unwrap();
    }
    txs[2].take().unwrap().rollback().await.unwrap();
    let got = sub.records(5).await;
    assert_eq!(got.iter().map(n_of).collect::<Vec<_>>(), [0, 1, 3, 4, 5], "in id order, nothing lost");
    until(&hub, "all committed", |v| mapping_view(v, 0)["commits"] == 5).await;
    hub.shutdown().await;
}
