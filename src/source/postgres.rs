//! PostgreSQL outbox source: rows of the application's outbox table read in id order, woken by
//! `LISTEN/NOTIFY` (polling every `poll_interval_ms` as a fallback), a cursor per mapping
//! committed after the hub took the rows. Design and measured figures:
//! `docs/design/sources-postgres.md`.
//!
//! * **The outbox** is the application's (the hub never creates or changes it):
//!   ```sql
//!   CREATE TABLE fanhub_outbox (
//!       id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- or bigserial
//!       topic      text NOT NULL,          -- the upstream name the mappings' templates match
//!       key        text,
//!       headers    jsonb,                  -- an object of strings
//!       payload    bytea NOT NULL,
//!       created_at timestamptz NOT NULL DEFAULT now()
//!   );
//!   CREATE FUNCTION fanhub_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS
//!     $$ BEGIN PERFORM pg_notify('fanhub_outbox', ''); RETURN NULL; END $$;
//!   CREATE TRIGGER fanhub_outbox_notify AFTER INSERT ON fanhub_outbox
//!     FOR EACH STATEMENT EXECUTE FUNCTION fanhub_outbox_notify();
//!   ```
//!   `table` and `channel` are used as written, quoted (case-sensitive).
//! * **Cursors**: the consumer creates [`CURSOR_TABLE`] if absent and keeps one row per mapping
//!   (`consumer` = `<group> <upstream template>`): the highest id such that every row of that
//!   mapping up to it is done with (published, dropped by its mode, or a dead letter). A
//!   mapping left behind (its lane full under `apply_backpressure`) holds back only its own
//!   cursor: the consumer reads on for the others, remembers where the stalled one stopped (a
//!   *hole*) and reads its rows again from there once it has room.
//! * **Positions**: partition the table, position the row id.
//! * **Gaps**: ids are handed out before their transactions commit, so a row may appear after a
//!   higher one was read. A scan stops before a gap in the ids and goes past it only once every
//!   transaction that was open when the gap was seen has ended (or after [`GAP_GIVE_UP`]);
//!   that clears every gap below the highest id then visible at once, so concurrent writers
//!   cost one settling per scan, not one per gap.
//! * **One node per consumer**: the query connection holds
//!   `pg_try_advisory_lock(hashtext(source), hashtext(group))`; a node that cannot take it
//!   retries (`retrying`, "another node holds the outbox lock") and takes over when the holder's
//!   session ends.
//! * **Lag**, per mapping, every second: rows of its upstream names after its committed cursor,
//!   counted over at most [`LAG_SAMPLE`] rows (beyond: the id distance to the head is added).
//!
//! Two connections: one `LISTEN`s, the other holds the lock, fetches, commits and measures.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, IsolationLevel, NoTls, Row};

use super::{Ack, Consumer, ConsumerState, Lane, Offer, Position, UpstreamRecord};
use crate::config::OffsetReset;

/// The table of committed cursors (created if absent).
pub(super) const CURSOR_TABLE: &str = "fanhub_source_cursor";
/// How often lag is measured.
const LAG_EVERY: Duration = Duration::from_secs(1);
/// Most rows a lag measurement counts per mapping.
const LAG_SAMPLE: i64 = 10_000;
/// Longest a statement may take before the connection is given up.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Connect timeout when the URL sets none.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Acknowledgements are gathered this long before one commit writes them.
const COMMIT_DELAY: Duration = Duration::from_millis(20);
/// How long a gap in the ids stays unexamined (a transaction between taking its id and writing
/// its row has no transaction id to wait for yet).
const GAP_SETTLE: Duration = Duration::from_millis(100);
/// How often an open gap is looked at again.
const GAP_CHECK: Duration = Duration::from_millis(20);
/// Longest a gap is waited for; then the scan goes past it (logged).
pub(super) const GAP_GIVE_UP: Duration = Duration::from_secs(60);

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("{}", chain(.0))]
    Pg(#[from] tokio_postgres::Error),
    #[error("another node holds the outbox lock (pg_try_advisory_lock) for this consumer")]
    Locked,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("connection lost: {0}")]
    Closed(String),
    #[error("the committed cursor moved under this consumer (another node consumed)")]
    Moved,
}

/// `e` with its causes (tokio-postgres keeps the reason, e.g. "Connection refused", in them).
fn chain(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Runs the consumer until the source stops.
pub(super) async fn run(c: &mut Consumer) {
    let backoff = c.backoff();
    let mut attempt = 0u32;
    let mut t = Tracker::new(c.lanes.len());
    let keys = cursor_keys(c);
    let mut kept = None;
    let mut locked_before = false;
    loop {
        if c.stopping() {
            break;
        }
        let error = match Session::open(c, &keys, &mut t).await {
            Ok(mut s) => {
                attempt = 0;
                locked_before = false;
                c.health.set(ConsumerState::Connected, None);
                match s.serve(c, &keys, &mut t).await {
                    Ok(()) => {
                        kept = Some(s);
                        break;
                    }
                    Err(e) => e,
                }
            }
            Err(e) => e,
        };
        if matches!(error, Error::Locked) {
            if !locked_before {
                tracing::info!(source = %c.source.config.name, group = %c.group, "another node consumes this outbox; waiting for its lock");
            }
            locked_before = true;
        } else {
            tracing::warn!(source = %c.source.config.name, group = %c.group, error = %error, "postgres source consumer lost; retrying");
        }
        // Another node holding the outbox lock is a standby, not a fault.
        let state = if matches!(error, Error::Locked) { ConsumerState::Standby } else { ConsumerState::Retrying };
        c.health.set(state, Some(error.to_string()));
        if c.sleep_or_stop(backoff.delay(attempt, rand::random::<f64>())).await {
            break;
        }
        attempt = attempt.saturating_add(1);
    }
    // Commit what the publishers finished; whatever stays uncommitted comes again.
    final_commit(c, &keys, &mut t, kept).await;
}

/// The cursor row of each lane: `<group> <upstream template>` (a group has no spaces), with the
/// mapping's index added when two mappings share a template.
fn cursor_keys(c: &Consumer) -> Vec<String> {
    let mut keys: Vec<String> = Vec::with_capacity(c.lanes.len());
    for lane in &c.lanes {
        let mut k = format!("{} {}", c.group, lane.config.upstream);
        if keys.contains(&k) {
            k = format!("{k} #{}", lane.index);
        }
        keys.push(k);
    }
    keys
}

/// The lane of this consumer that takes rows of `topic`: the source's first matching mapping,
/// when it is one of this consumer's (an exclusive mapping's rows are its own consumer's).
fn lane_of(c: &Consumer, topic: &str) -> Option<usize> {
    let first = c.source.lanes.iter().find(|l| l.upstream.matches(topic).is_some())?;
    c.lanes.iter().position(|l| Arc::ptr_eq(l, first))
}

/// `name` quoted as an identifier; `schema.table` as two.
fn quote(name: &str, dotted: bool) -> String {
    let one = |p: &str| format!("\"{}\"", p.replace('"', "\"\""));
    if dotted {
        name.split('.').map(one).collect::<Vec<_>>().join(".")
    } else {
        one(name)
    }
}

/// Runs `f` within [`QUERY_TIMEOUT`].
async fn timed<T>(f: impl Future<Output = Result<T, tokio_postgres::Error>>) -> Result<T, Error> {
    tokio::time::timeout(QUERY_TIMEOUT, f).await.map_err(|_| Error::Timeout(QUERY_TIMEOUT))?.map_err(Error::from)
}

/// A connection and the task driving it (its text: why it ended).
async fn connect(
    url: &str,
) -> Result<(Client, tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>), Error> {
    let mut config: tokio_postgres::Config = url.parse()?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("fanhub");
    }
    tokio::time::timeout(CONNECT_TIMEOUT + Duration::from_secs(1), config.connect(NoTls))
        .await
        .map_err(|_| Error::Timeout(CONNECT_TIMEOUT))?
        .map_err(Error::from)
}

/// A query connection holding this consumer's advisory lock, and its driver.
async fn connect_locked(c: &Consumer) -> Result<(Client, JoinHandle<String>), Error> {
    let (client, conn) = connect(&c.source.config.url).await?;
    let driver = tokio::spawn(async move {
        match conn.await {
            Ok(()) => "closed by the server".to_owned(),
            Err(e) => e.to_string(),
        }
    });
    let locked = timed(
        client.query_one("SELECT pg_try_advisory_lock(hashtext($1), hashtext($2))", &[&c.source.config.name, &c.group]),
    )
    .await
    .and_then(|row| row.try_get::<_, bool>(0).map_err(Error::from));
    match locked {
        Ok(true) => Ok((client, driver)),
        Ok(false) => {
            driver.abort();
            Err(Error::Locked)
        }
        Err(e) => {
            driver.abort();
            Err(e)
        }
    }
}

/// What the consumer knows of its lanes' progress through the table; no IO.
#[derive(Debug, Default)]
struct Tracker {
    /// Every row with an id at or below this has been routed: offered, skipped, or left for a
    /// lane's catch-up.
    fetched: i64,
    /// A row at or below this id may follow a gap (the gap was resolved).
    gap_cleared: i64,
    /// Per lane of the consumer.
    lanes: Vec<LaneTrack>,
    /// Set from the cursor table once.
    ready: bool,
}

/// One lane's progress.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct LaneTrack {
    /// Its cursor as stored.
    committed: i64,
    /// Offered and not yet finished.
    in_flight: BTreeSet<i64>,
    /// Finished, not yet committed (a lower one is still in flight, or no commit ran yet).
    acked: BTreeSet<i64>,
    /// The lane's rows from this id up to `fetched` were not offered (it was full).
    behind: Option<i64>,
}

/// What to do with a row for a lane.
#[derive(Debug, PartialEq, Eq)]
enum Take {
    /// Done with before (at or below the lane's cursor).
    Skip,
    /// The lane is full or behind: leave it for its catch-up.
    Hold,
    /// Offer it.
    Offer,
}

impl Tracker {
    fn new(lanes: usize) -> Self {
        Self { lanes: vec![LaneTrack::default(); lanes], ..Self::default() }
    }

    /// Takes the stored cursors. Unchanged since this consumer last committed: everything in
    /// hand stays valid. Otherwise (first start, or another node consumed meanwhile) it starts
    /// over from them; the lanes' ledgers skip what this node published already. True when
    /// it started over.
    fn adopt(&mut self, stored: &[i64]) -> bool {
        if self.ready && self.lanes.iter().zip(stored).all(|(l, s)| l.committed == *s) {
            return false;
        }
        self.lanes = stored.iter().map(|s| LaneTrack { committed: *s, ..LaneTrack::default() }).collect();
        self.fetched = stored.iter().copied().min().unwrap_or(0);
        self.gap_cleared = self.fetched;
        self.ready = true;
        true
    }

    /// What the main scan does with row `id` of `lane` (`paused`: the lane is full now).
    fn take(&mut self, lane: usize, id: i64, paused: bool) -> Take {
        let l = &mut self.lanes[lane];
        if id <= l.committed {
            Take::Skip
        } else if l.behind.is_some() || paused {
            l.behind.get_or_insert(id);
            Take::Hold
        } else {
            l.in_flight.insert(id);
            Take::Offer
        }
    }

    /// A row the lane's catch-up offers.
    fn catch_up(&mut self, lane: usize, id: i64) -> bool {
        let l = &mut self.lanes[lane];
        if id <= l.committed {
            return false;
        }
        l.in_flight.insert(id);
        true
    }

    /// The lane's catch-up got through `id` (it is caught up when that reaches `fetched`).
    fn caught_up_to(&mut self, lane: usize, id: i64) {
        let fetched = self.fetched;
        let l = &mut self.lanes[lane];
        l.behind = (id < fetched).then_some(id + 1);
    }

    /// Row `id` of `lane` is done with.
    fn ack(&mut self, lane: usize, id: i64) {
        let l = &mut self.lanes[lane];
        // An id not in flight was offered before the consumer started over: the hub has it
        // (or its mode dropped it) all the same, which is what committing it means.
        if l.in_flight.remove(&id) || id > l.committed {
            l.acked.insert(id);
        }
    }

    /// Where the lane's cursor can go: below its first row in flight, below its hole, and no
    /// further than what was routed.
    fn point(&self, lane: usize) -> i64 {
        let l = &self.lanes[lane];
        let mut p = self.fetched;
        if let Some(b) = l.behind {
            p = p.min(b - 1);
        }
        if let Some(first) = l.in_flight.first() {
            p = p.min(first - 1);
        }
        p.max(l.committed)
    }

    /// Lanes whose cursor can move: `(lane, from, to)`.
    fn to_commit(&self) -> Vec<(usize, i64, i64)> {
        (0..self.lanes.len())
            .filter_map(|i| {
                let p = self.point(i);
                (p > self.lanes[i].committed).then_some((i, self.lanes[i].committed, p))
            })
            .collect()
    }

    /// The lane's cursor is stored at `to`: how many finished rows that commits.
    fn committed(&mut self, lane: usize, to: i64) -> u64 {
        let l = &mut self.lanes[lane];
        l.committed = to;
        let above = l.acked.split_off(&(to + 1));
        let n = l.acked.len() as u64;
        l.acked = above;
        n
    }
}

/// A gap in the ids the scan waits at.
#[derive(Debug)]
struct Gap {
    /// The first missing id.
    expected: i64,
    /// The highest id visible when the gap was first seen: every id below it had been handed
    /// out by then, so once the transactions open after the settling are over, every gap below
    /// it is over too (the scan then goes past all of them at once, not one per settling).
    horizon: i64,
    since: Instant,
    /// The snapshot taken once the gap settled, and the first id visible in it.
    snapshot: Option<(String, i64)>,
    next_check: Instant,
}

struct Session {
    client: Client,
    driver: JoinHandle<String>,
    _listen: Client,
    listener: JoinHandle<String>,
    wake: Arc<Notify>,
    table: Arc<str>,
    measured: Instant,
    last_scan: Instant,
    scan_due: bool,
    commit_at: Option<Instant>,
    gap: Option<Gap>,
    /// The last gap's horizon and when it was first seen: a gap found below that horizon after
    /// the first was filled has settled already.
    seen: Option<(i64, Instant)>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.driver.abort();
        self.listener.abort();
    }
}

/// What ended a wait.
enum Woke {
    /// A notification, or a full lane has room: scan.
    Scan,
    /// A finished record.
    Ack(Ack),
    /// A deadline (poll, lag, commit, gap).
    Timer,
}

/// What a fetch found.
#[derive(Debug, PartialEq, Eq)]
enum Fetched {
    /// A full batch: there may be more.
    More,
    /// Less than a batch.
    Done,
}

impl Session {
    async fn open(c: &Consumer, keys: &[String], t: &mut Tracker) -> Result<Self, Error> {
        let (client, driver) = connect_locked(c).await?;
        let table_q = quote(&c.source.config.table, true);
        let create = format!(
            "CREATE TABLE IF NOT EXISTS {CURSOR_TABLE} (source text NOT NULL, consumer text NOT NULL, \
             last_id bigint NOT NULL, PRIMARY KEY (source, consumer))"
        );
        match timed(client.batch_execute(&create)).await {
            // Two consumers creating it at once: the other one did.
            Err(Error::Pg(e))
                if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
                    || e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_TABLE) => {}
            other => other?,
        }
        let name = &c.source.config.name;
        let rows = timed(client.query(
            &format!("SELECT consumer, last_id FROM {CURSOR_TABLE} WHERE source = $1 AND consumer = ANY($2)"),
            &[name, &keys],
        ))
        .await?;
        let mut stored: Vec<Option<i64>> = vec![None; keys.len()];
        for row in rows {
            let k: String = row.try_get(0)?;
            if let Some(i) = keys.iter().position(|x| *x == k) {
                stored[i] = Some(row.try_get(1)?);
            }
        }
        if stored.iter().any(Option::is_none) {
            // A mapping without a cursor starts by `offset_reset`.
            let start = match c.settings.offset_reset.or(c.source.config.consumer.offset_reset).unwrap_or_default() {
                OffsetReset::Earliest => "greatest(coalesce(min(id), 1) - 1, 0)",
                OffsetReset::Latest => "coalesce(max(id), 0)",
            };
            let row = timed(client.query_one(&format!("SELECT ({start})::int8 FROM {table_q}"), &[])).await?;
            let start: i64 = row.try_get(0)?;
            for (i, s) in stored.iter_mut().enumerate() {
                if s.is_none() {
                    timed(client.execute(
                        &format!(
                            "INSERT INTO {CURSOR_TABLE} (source, consumer, last_id) VALUES ($1, $2, $3) \
                             ON CONFLICT (source, consumer) DO NOTHING"
                        ),
                        &[name, &keys[i], &start],
                    ))
                    .await?;
                    *s = Some(start);
                }
            }
        }
        let stored: Vec<i64> = stored.into_iter().map(Option::unwrap_or_default).collect();
        if t.adopt(&stored) {
            tracing::info!(source = %name, group = %c.group, from = t.fetched, "postgres source consumer reading from its committed cursors");
        }
        // LISTEN before the first scan: a row committed after the scan wakes it.
        let (listen, mut conn) = connect(&c.source.config.url).await?;
        let wake = Arc::new(Notify::new());
        let notify = wake.clone();
        let listener = tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(_))) => notify.notify_one(),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return e.to_string(),
                    None => return "closed by the server".to_owned(),
                }
            }
        });
        let listen_sql = format!("LISTEN {}", quote(&c.source.config.channel, false));
        if let Err(e) = timed(listen.batch_execute(&listen_sql)).await {
            listener.abort();
            driver.abort();
            return Err(e);
        }
        Ok(Self {
            client,
            driver,
            _listen: listen,
            listener,
            wake,
            table: Arc::from(c.source.config.table.as_str()),
            measured: Instant::now() - LAG_EVERY,
            last_scan: Instant::now(),
            scan_due: true,
            commit_at: None,
            gap: None,
            seen: None,
        })
    }

    /// Fetches, routes and commits until the source stops (Ok) or PostgreSQL fails (Err).
    async fn serve(&mut self, c: &mut Consumer, keys: &[String], t: &mut Tracker) -> Result<(), Error> {
        let mut stop = c.stop.clone();
        let poll = Duration::from_millis(c.source.config.poll_interval_ms);
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            while let Ok(a) = c.acks.try_recv() {
                self.absorb(c, t, &a);
            }
            if self.commit_at.is_some_and(|at| Instant::now() >= at) {
                self.commit_at = None;
                commit(&self.client, c, keys, t).await?;
            }
            if self.measured.elapsed() >= LAG_EVERY {
                self.measure(c, t).await?;
            }
            if self.gap.as_ref().is_some_and(|g| Instant::now() >= g.next_check) {
                self.check_gap(c, t).await?;
            }
            let mut more = false;
            for i in 0..c.lanes.len() {
                if t.lanes[i].behind.is_some() && !c.lanes[i].is_paused() {
                    more |= self.catch_up(c, t, i).await? == Fetched::More;
                }
            }
            if self.last_scan.elapsed() >= poll {
                self.scan_due = true;
            }
            // Reading on only helps a lane that takes rows now.
            let open = (0..c.lanes.len()).any(|i| t.lanes[i].behind.is_none() && !c.lanes[i].is_paused());
            if self.scan_due && open && self.gap.is_none() {
                self.scan_due = false;
                self.last_scan = Instant::now();
                if self.scan(c, t).await? == Fetched::More {
                    self.scan_due = true;
                    more = true;
                }
            }
            if more {
                continue;
            }
            let mut next = self.measured + LAG_EVERY;
            if open && self.gap.is_none() {
                next = next.min(self.last_scan + poll);
            }
            if let Some(at) = self.commit_at {
                next = next.min(at);
            }
            if let Some(g) = &self.gap {
                next = next.min(g.next_check);
            }
            let woke = {
                let paused: Vec<&Arc<Lane>> = c.lanes.iter().filter(|l| l.is_paused()).collect();
                let rooms = async {
                    if paused.is_empty() {
                        std::future::pending::<()>().await;
                    } else {
                        futures_util::future::select_all(paused.iter().map(|l| Box::pin(l.room()))).await;
                    }
                };
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return Ok(()),
                    () = self.wake.notified() => Woke::Scan,
                    a = c.acks.recv() => match a {
                        Some(a) => Woke::Ack(a),
                        // Every lane is gone: nothing more to do.
                        None => return Ok(()),
                    },
                    () = rooms => Woke::Scan,
                    () = tokio::time::sleep_until(next.into()) => Woke::Timer,
                    r = &mut self.driver => return Err(Error::Closed(r.unwrap_or_else(|e| e.to_string()))),
                    r = &mut self.listener => return Err(Error::Closed(r.unwrap_or_else(|e| e.to_string()))),
                }
            };
            match woke {
                Woke::Scan => self.scan_due = true,
                Woke::Ack(a) => self.absorb(c, t, &a),
                Woke::Timer => {}
            }
        }
    }

    /// One finished record: tracked, and a commit scheduled.
    fn absorb(&mut self, c: &Consumer, t: &mut Tracker, a: &Ack) {
        absorb(c, t, a);
        self.commit_at.get_or_insert_with(|| Instant::now() + COMMIT_DELAY);
    }

    /// The main scan: the rows after `fetched`, in id order, each to its lane (or held for it,
    /// or skipped); stops before a gap in the ids.
    async fn scan(&mut self, c: &Consumer, t: &mut Tracker) -> Result<Fetched, Error> {
        let batch = c.settings.batch() as i64;
        let sql = format!(
            "SELECT id, topic, key, headers::text, payload FROM {} WHERE id > $1 ORDER BY id LIMIT $2",
            quote(&c.source.config.table, true)
        );
        let rows = timed(self.client.query(&sql, &[&t.fetched, &batch])).await?;
        let n = rows.len();
        let last = rows.last().map(|r| r.try_get::<_, i64>(0)).transpose()?.unwrap_or(t.fetched);
        let mut skipped = 0u64;
        for row in rows {
            let id: i64 = row.try_get(0)?;
            if id > t.fetched + 1 && id > t.gap_cleared {
                // A gap: a transaction may still write the missing ids.
                let expected = t.fetched + 1;
                if self.gap.as_ref().is_none_or(|g| g.expected != expected) {
                    let now = Instant::now();
                    let (horizon, since) = match self.seen {
                        Some((horizon, since)) if expected < horizon => (horizon, since),
                        _ => (last, now),
                    };
                    self.seen = Some((horizon, since));
                    self.gap = Some(Gap { expected, horizon, since, snapshot: None, next_check: since + GAP_SETTLE });
                }
                return Ok(Fetched::Done);
            }
            self.gap = None;
            let topic: String = row.try_get(1)?;
            match lane_of(c, &topic) {
                None => skipped += 1,
                Some(i) => {
                    let lane = &c.lanes[i];
                    if t.take(i, id, lane.is_paused()) == Take::Offer {
                        offer(lane, to_record(&self.table, id, topic, &row)?);
                    }
                }
            }
            t.fetched = id;
        }
        if skipped > 0 {
            tracing::debug!(source = %c.source.config.name, rows = skipped, through = t.fetched, "outbox rows no mapping takes, skipped");
        }
        Ok(if n as i64 >= batch { Fetched::More } else { Fetched::Done })
    }

    /// Reads lane `i`'s rows again from its hole (up to `fetched`) and offers them until it is
    /// full again or caught up.
    async fn catch_up(&mut self, c: &Consumer, t: &mut Tracker, i: usize) -> Result<Fetched, Error> {
        let Some(from) = t.lanes[i].behind else { return Ok(Fetched::Done) };
        let lane = &c.lanes[i];
        let batch = c.settings.batch() as i64;
        // A prefilter on the template (`%` for each placeholder); the template decides.
        let like = if lane.config.upstream.contains('\\') { "%".to_owned() } else { lane.upstream.with_wildcards("%") };
        let sql = format!(
            "SELECT id, topic, key, headers::text, payload FROM {} WHERE id >= $1 AND id <= $2 AND topic LIKE $3 \
             ORDER BY id LIMIT $4",
            quote(&c.source.config.table, true)
        );
        let rows = timed(self.client.query(&sql, &[&from, &t.fetched, &like, &batch])).await?;
        let n = rows.len();
        let mut last = from - 1;
        for row in rows {
            let id: i64 = row.try_get(0)?;
            let topic: String = row.try_get(1)?;
            last = id;
            if lane_of(c, &topic) != Some(i) || !t.catch_up(i, id) {
                continue;
            }
            if let Offer::Queued { pause: true } = offer(lane, to_record(&self.table, id, topic, &row)?) {
                t.caught_up_to(i, id);
                return Ok(Fetched::Done);
            }
        }
        if (n as i64) < batch {
            last = t.fetched;
        }
        t.caught_up_to(i, last);
        Ok(if t.lanes[i].behind.is_some() { Fetched::More } else { Fetched::Done })
    }

    /// Looks at the gap the scan waits at: filled, or every transaction open when it was seen
    /// has ended (then the scan goes past it), or still open.
    async fn check_gap(&mut self, c: &Consumer, t: &mut Tracker) -> Result<(), Error> {
        let Some(gap) = self.gap.as_mut() else { return Ok(()) };
        let now = Instant::now();
        gap.next_check = now + GAP_CHECK;
        match &gap.snapshot {
            None => {
                // The snapshot and the first visible id after `fetched`, seen together.
                let tx = self
                    .client
                    .build_transaction()
                    .isolation_level(IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start();
                let tx = timed(tx).await?;
                let snap = timed(tx.query_one("SELECT pg_current_snapshot()::text", &[])).await?;
                let first = timed(tx.query_one(
                    &format!("SELECT min(id) FROM {} WHERE id > $1", quote(&c.source.config.table, true)),
                    &[&t.fetched],
                ))
                .await?;
                timed(tx.commit()).await?;
                let first: Option<i64> = first.try_get(0)?;
                match first {
                    Some(f) if f > gap.expected => gap.snapshot = Some((snap.try_get(0)?, f)),
                    _ => {
                        // Filled (or the rows are gone): scan again.
                        self.gap = None;
                        self.scan_due = true;
                    }
                }
            }
            Some((snap, first)) => {
                let open = timed(self.client.query_one(
                    "SELECT count(*) FROM pg_snapshot_xip($1::text::pg_snapshot) AS x \
                     WHERE pg_xact_status(x) = 'in progress'",
                    &[snap],
                ))
                .await?;
                let open: i64 = open.try_get(0)?;
                let given_up = gap.since.elapsed() >= GAP_GIVE_UP;
                if open == 0 || given_up {
                    if open > 0 {
                        tracing::warn!(source = %c.source.config.name, from = gap.expected, to = first - 1, open,
                            "outbox ids missing for {GAP_GIVE_UP:?} while transactions stay open; reading past them");
                    }
                    t.gap_cleared = (*first).max(gap.horizon);
                    self.gap = None;
                    self.scan_due = true;
                }
            }
        }
        Ok(())
    }

    /// Lag per lane: its rows after its committed cursor.
    async fn measure(&mut self, c: &Consumer, t: &Tracker) -> Result<(), Error> {
        self.measured = Instant::now();
        let table = quote(&c.source.config.table, true);
        let head = timed(self.client.query_one(&format!("SELECT coalesce(max(id), 0) FROM {table}"), &[])).await?;
        let head: i64 = head.try_get(0)?;
        let mut lag = vec![0u64; c.lanes.len()];
        // One count per distinct cursor (usually one for all lanes).
        let mut cursors: Vec<i64> = t.lanes.iter().map(|l| l.committed).filter(|x| *x < head).collect();
        cursors.sort_unstable();
        cursors.dedup();
        let sql = format!(
            "SELECT topic, count(*)::int8, max(id) FROM \
             (SELECT id, topic FROM {table} WHERE id > $1 ORDER BY id LIMIT $2) AS s GROUP BY topic"
        );
        for cursor in cursors {
            let rows = timed(self.client.query(&sql, &[&cursor, &LAG_SAMPLE])).await?;
            let mut total = 0i64;
            let mut last = cursor;
            let mut per_lane = vec![0u64; c.lanes.len()];
            for row in rows {
                let topic: String = row.try_get(0)?;
                let n: i64 = row.try_get(1)?;
                let max: i64 = row.try_get(2)?;
                total += n;
                last = last.max(max);
                if let Some(i) = lane_of(c, &topic) {
                    per_lane[i] += n as u64;
                }
            }
            // Past the sample, every row is counted for each lane (an upper bound).
            let beyond = if total >= LAG_SAMPLE { (head - last).max(0) as u64 } else { 0 };
            for (i, l) in t.lanes.iter().enumerate() {
                if l.committed == cursor {
                    lag[i] = per_lane[i] + beyond;
                }
            }
        }
        for (lane, n) in c.lanes.iter().zip(lag) {
            lane.stats.lag.store(n, Relaxed);
        }
        Ok(())
    }
}

/// Offers `record` to `lane`; a record the lane dropped goes back as done.
fn offer(lane: &Lane, record: UpstreamRecord) -> Offer {
    let outcome = lane.offer(record);
    match outcome {
        Offer::Dropped(r) => {
            lane.done(r, false);
            Offer::Queued { pause: false }
        }
        queued => queued,
    }
}

/// Tracks one finished record.
fn absorb(c: &Consumer, t: &mut Tracker, a: &Ack) {
    if let Some(i) = lane_of(c, &a.upstream) {
        t.ack(i, a.position.major as i64);
    }
}

/// Moves every lane's cursor as far as its finished rows allow; a cursor someone else moved
/// fails the session (it starts over from the stored ones).
async fn commit(client: &Client, c: &Consumer, keys: &[String], t: &mut Tracker) -> Result<(), Error> {
    let moves = t.to_commit();
    if moves.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = moves.iter().map(|(i, _, _)| keys[*i].as_str()).collect();
    let from: Vec<i64> = moves.iter().map(|(_, f, _)| *f).collect();
    let to: Vec<i64> = moves.iter().map(|(_, _, p)| *p).collect();
    let sql = format!(
        "UPDATE {CURSOR_TABLE} AS c SET last_id = v.to_id \
         FROM unnest($2::text[], $3::int8[], $4::int8[]) AS v(consumer, from_id, to_id) \
         WHERE c.source = $1 AND c.consumer = v.consumer AND c.last_id = v.from_id"
    );
    let n = timed(client.execute(&sql, &[&c.source.config.name, &names, &from, &to])).await?;
    if n as usize != moves.len() {
        // Force a fresh read of the cursors.
        t.ready = false;
        return Err(Error::Moved);
    }
    for (i, _, p) in moves {
        let done = t.committed(i, p);
        c.lanes[i].stats.commits.fetch_add(done, Relaxed);
    }
    Ok(())
}

/// Commits what the publishers finished before the stop: on the session's connection when it
/// still holds the lock, else on a fresh one that takes it.
async fn final_commit(c: &mut Consumer, keys: &[String], t: &mut Tracker, session: Option<Session>) {
    c.publishers_done().await;
    while let Ok(a) = c.acks.try_recv() {
        absorb(c, t, &a);
    }
    if !t.ready || t.to_commit().is_empty() {
        return;
    }
    let limit = Duration::from_secs(3);
    let outcome = tokio::time::timeout(limit, async {
        match session {
            Some(s) => commit(&s.client, c, keys, t).await,
            None => {
                let (client, driver) = connect_locked(c).await?;
                let r = commit(&client, c, keys, t).await;
                driver.abort();
                r
            }
        }
    })
    .await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(source = %c.source.config.name, error = %e, "postgres source: final commit failed; those rows come again")
        }
        Err(_) => {
            tracing::warn!(source = %c.source.config.name, "postgres source: final commit timed out; those rows come again")
        }
    }
}

/// A row as a record.
fn to_record(table: &Arc<str>, id: i64, topic: String, row: &Row) -> Result<UpstreamRecord, Error> {
    let key: Option<String> = row.try_get(2)?;
    let headers: Option<String> = row.try_get(3)?;
    let payload: Vec<u8> = row.try_get(4)?;
    Ok(UpstreamRecord {
        upstream: Arc::from(topic),
        partition: table.clone(),
        position: Position::at(id as u64),
        position_text: id.to_string(),
        key,
        headers: headers.as_deref().map(parse_headers).unwrap_or_default(),
        payload: Bytes::from(payload),
        token: None,
    })
}

/// The `headers` column (a JSON object) as pairs: strings as they are, other values as JSON.
fn parse_headers(text: &str) -> Vec<(String, String)> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(m)) => m
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => (k, s),
                other => (k, other.to_string()),
            })
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(stored: &[i64]) -> Tracker {
        let mut t = Tracker::new(stored.len());
        assert!(t.adopt(stored));
        t
    }

    #[test]
    fn a_cursor_moves_over_the_contiguous_prefix_of_finished_rows_whatever_order_they_finish_in() {
        let mut t = tracker(&[0, 0]);
        for id in 1..=6 {
            assert_eq!(t.take((id % 2) as usize, id, false), Take::Offer);
            t.fetched = id;
        }
        // Lane 0 has 2, 4, 6; lane 1 has 1, 3, 5. Acks out of order.
        t.ack(0, 4);
        t.ack(1, 1);
        assert_eq!(t.to_commit(), [(0, 0, 1), (1, 0, 2)], "lane 0 stops below 2 (1 is not its), lane 1 below 3");
        assert_eq!((t.committed(0, 1), t.committed(1, 2)), (0, 1), "4 waits for 2");
        t.ack(0, 2);
        t.ack(1, 5);
        t.ack(1, 3);
        assert_eq!(t.to_commit(), [(0, 1, 5), (1, 2, 6)]);
        assert_eq!((t.committed(0, 5), t.committed(1, 6)), (2, 2));
        t.ack(0, 6);
        assert_eq!(t.to_commit(), [(0, 5, 6)]);
        assert_eq!(t.committed(0, 6), 1);
        assert!(t.to_commit().is_empty());
    }

    #[test]
    fn rows_no_lane_takes_let_the_cursors_move() {
        let mut t = tracker(&[10]);
        t.fetched = 25;
        assert_eq!(t.to_commit(), [(0, 10, 25)]);
    }

    #[test]
    fn a_full_lane_leaves_a_hole_its_cursor_stops_below_while_the_others_go_on() {
        let mut t = tracker(&[0, 0]);
        assert_eq!(t.take(0, 1, false), Take::Offer);
        assert_eq!(t.take(0, 2, true), Take::Hold, "full: held from 2");
        assert_eq!(t.take(1, 3, false), Take::Offer);
        assert_eq!(t.take(0, 4, false), Take::Hold, "room again, but behind: order first");
        assert_eq!(t.take(1, 5, false), Take::Offer);
        t.fetched = 5;
        for (l, id) in [(0, 1), (1, 3), (1, 5)] {
            t.ack(l, id);
        }
        assert_eq!(t.to_commit(), [(0, 0, 1), (1, 0, 5)], "lane 0 stops below its hole");
        t.committed(0, 1);
        t.committed(1, 5);
        // Catch-up offers 2, fills again at 2: the hole moves to 3.
        assert!(t.catch_up(0, 2));
        t.caught_up_to(0, 2);
        assert_eq!(t.lanes[0].behind, Some(3));
        // Then reads through 5 (4 offered): caught up.
        assert!(t.catch_up(0, 4));
        t.caught_up_to(0, 5);
        assert_eq!(t.lanes[0].behind, None);
        t.ack(0, 2);
        t.ack(0, 4);
        assert_eq!(t.to_commit(), [(0, 1, 5)]);
        assert_eq!(t.committed(0, 5), 2);
    }

    #[test]
    fn rows_at_or_below_a_lanes_cursor_are_not_offered_again() {
        let mut t = tracker(&[7, 3]);
        assert_eq!(t.fetched, 3, "reading starts at the lowest cursor");
        assert_eq!(t.take(0, 5, false), Take::Skip);
        assert_eq!(t.take(1, 5, false), Take::Offer);
        assert!(!t.catch_up(0, 6));
    }

    #[test]
    fn the_state_survives_a_reconnect_unless_the_cursors_moved_meanwhile() {
        let mut t = tracker(&[0]);
        t.take(0, 1, false);
        t.fetched = 1;
        assert!(!t.adopt(&[0]), "nobody else committed: keep what is in hand");
        assert_eq!(t.lanes[0].in_flight.len(), 1);
        assert!(t.adopt(&[40]), "another node consumed: start over at its cursor");
        assert_eq!((t.fetched, t.lanes[0].in_flight.len()), (40, 0));
        // A late ack of a row from before is below the cursor: nothing to commit.
        t.ack(0, 1);
        assert!(t.to_commit().is_empty());
        assert_eq!(t.committed(0, 40), 0);
    }

    #[test]
    fn headers_are_an_object_of_strings_and_names_are_quoted() {
        assert_eq!(
            parse_headers(r#"{"b":"x","a":1,"c":{"d":true}}"#),
            [("a".into(), "1".into()), ("b".into(), "x".into()), ("c".into(), r#"{"d":true}"#.into())]
        );
        assert!(parse_headers("[1]").is_empty());
        assert_eq!(quote("app.outbox", true), r#""app"."outbox""#);
        assert_eq!(quote("ch.x", false), r#""ch.x""#);
        assert_eq!(quote(r#"a"b"#, false), r#""a""b""#);
    }
}
