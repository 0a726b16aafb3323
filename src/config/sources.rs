//! `[[sources]]`: upstream logs the hub consumes into topics (Kafka, NATS JetStream, Redis
//! Streams, a PostgreSQL outbox), their mappings to hub topics, and the checks run at start.
//!
//! ```toml
//! [[sources]]
//! name = "fleet"
//! kind = "redis"                      # kafka | nats | redis | postgres
//! url = "redis://127.0.0.1:6379"
//! dead_letter = "dead/fleet"          # hub topic for records that cannot be published
//! upstream_dead_letter = "fleet.dead" # and/or a stream / subject / topic in the upstream itself
//! [sources.consumer]                  # the consumer every mapping shares
//! max_poll_records = 256
//! [[sources.mappings]]
//! upstream = "telemetry.{device}"     # stream / topic / subject / outbox topic, templated
//! topic = "telemetry/{device}"        # hub topic, filled from the upstream name
//! backpressure_mode = "apply_backpressure"
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ConfigProblem;
use crate::hub::TopicName;

/// Which upstream a source reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// Kafka topics through a consumer group (`url`: `kafka://host:port[,host:port…]`).
    Kafka,
    /// NATS JetStream subjects of one stream (`url`: `nats://host:port`).
    Nats,
    /// Redis Streams through a consumer group (`url`: `redis://host:port[/db]`).
    Redis,
    /// A PostgreSQL outbox table polled in id order, woken by `LISTEN/NOTIFY`
    /// (`url`: `postgres://user@host:port/db`).
    Postgres,
}

impl SourceKind {
    /// The name used in config, metrics and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kafka => "kafka",
            Self::Nats => "nats",
            Self::Redis => "redis",
            Self::Postgres => "postgres",
        }
    }

    /// URL schemes this kind accepts.
    fn schemes(self) -> &'static [&'static str] {
        match self {
            Self::Kafka => &["kafka://"],
            Self::Nats => &["nats://"],
            Self::Redis => &["redis://"],
            Self::Postgres => &["postgres://", "postgresql://"],
        }
    }

    /// Checks `name` as this kind's upstream dead letter; the allowed-value text of a config
    /// problem otherwise.
    fn dead_letter_name(self, name: &str) -> Result<(), &'static str> {
        let plain = !name.is_empty() && !name.contains(|c: char| c.is_whitespace() || c.is_control());
        match self {
            Self::Postgres => Err("unset: not supported for postgres sources; use dead_letter (a hub topic)"),
            Self::Redis if !plain => Err("a Redis stream key (non-empty, no whitespace)"),
            Self::Nats if !plain || name.contains(['*', '>']) || name.split('.').any(str::is_empty) => {
                Err("a NATS subject without wildcards (tokens separated by ., no whitespace, * or >)")
            }
            Self::Kafka
                if name.len() > 249
                    || name == "."
                    || name == ".."
                    || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                    || name.is_empty() =>
            {
                Err("a Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -, not . or ..)")
            }
            _ => Ok(()),
        }
    }

    /// The cargo feature a build needs for this kind, when it has not got it.
    fn missing_feature(self) -> Option<&'static str> {
        let built = match self {
            Self::Kafka => cfg!(feature = "kafka"),
            Self::Nats => cfg!(feature = "nats"),
            Self::Redis => cfg!(feature = "redis"),
            Self::Postgres => cfg!(feature = "postgres"),
        };
        (!built).then_some(self.as_str())
    }
}

/// Where a consumer without a committed position starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OffsetReset {
    /// The oldest record upstream still has.
    #[default]
    Earliest,
    /// Only records produced from now on.
    Latest,
}

/// What a mapping does when its buffer is full (the hub takes its records slower than the
/// upstream delivers them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackpressureMode {
    /// Stop fetching this mapping's upstream (its partitions, streams or subject) until the
    /// buffer has room; nothing is dropped, the other mappings go on.
    #[default]
    ApplyBackpressure,
    /// Drop the oldest buffered record to make room (counted; its position is committed).
    DropOldest,
    /// Drop the record that does not fit (counted; its position is committed).
    DropNewest,
}

impl BackpressureMode {
    /// The name used in config and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApplyBackpressure => "apply_backpressure",
            Self::DropOldest => "drop_oldest",
            Self::DropNewest => "drop_newest",
        }
    }
}

/// Consumer settings: a source's shared consumer (`[sources.consumer]`) or a mapping's own
/// (`[sources.mappings.exclusive]`). Unset values take the kind's defaults; the Kafka-only ones
/// are refused on other kinds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerSettings {
    /// Consumer group (Kafka `group.id`, Redis group, JetStream durable name). Default
    /// `fanhub.<source>` for the shared consumer, `fanhub.<source>.<mapping index>` for an
    /// exclusive one.
    pub group: Option<String>,
    /// Kafka `session.timeout.ms`.
    pub session_timeout_ms: Option<u64>,
    /// Kafka `heartbeat.interval.ms`.
    pub heartbeat_interval_ms: Option<u64>,
    /// Kafka `max.poll.interval.ms`.
    pub max_poll_interval_ms: Option<u64>,
    /// Most records per fetch (Redis `COUNT`, JetStream batch, outbox rows per query; Kafka
    /// buffers per partition). Default 256.
    pub max_poll_records: Option<u64>,
    /// Kafka `fetch.min.bytes`.
    pub fetch_min_bytes: Option<u64>,
    /// Longest a fetch waits for records (Redis `BLOCK`, JetStream expiry, Kafka
    /// `fetch.wait.max.ms`). Default 500.
    pub fetch_max_wait_ms: Option<u64>,
    /// Where a group without a committed position starts.
    pub offset_reset: Option<OffsetReset>,
    /// Kafka only: more librdkafka properties, passed as they are (e.g.
    /// `"security.protocol" = "ssl"`). Auto-commit cannot be turned on.
    pub options: BTreeMap<String, String>,
}

impl ConsumerSettings {
    /// `max_poll_records` or its default.
    pub fn batch(&self) -> usize {
        self.max_poll_records.unwrap_or(256) as usize
    }

    /// `fetch_max_wait_ms` or its default.
    pub fn wait_ms(&self) -> u64 {
        self.fetch_max_wait_ms.unwrap_or(500)
    }

    fn problems(&self, key: &str, kind: SourceKind, p: &mut Vec<ConfigProblem>) {
        let mut range = |k: &str, v: Option<u64>, lo: u64, hi: u64| {
            if let Some(v) = v.filter(|v| *v < lo || *v > hi) {
                p.push(ConfigProblem {
                    key: format!("{key}.{k}"),
                    value: v.to_string(),
                    allowed: format!("{lo}..={hi}"),
                });
            }
        };
        range("session_timeout_ms", self.session_timeout_ms, 1000, 3_600_000);
        range("heartbeat_interval_ms", self.heartbeat_interval_ms, 100, 3_600_000);
        range("max_poll_interval_ms", self.max_poll_interval_ms, 1000, 86_400_000);
        range("max_poll_records", self.max_poll_records, 1, 100_000);
        range("fetch_min_bytes", self.fetch_min_bytes, 1, 100 << 20);
        range("fetch_max_wait_ms", self.fetch_max_wait_ms, 1, 60_000);
        if let Some(g) = &self.group {
            if g.is_empty() || g.len() > 200 || g.contains(char::is_whitespace) {
                p.push(ConfigProblem {
                    key: format!("{key}.group"),
                    value: g.clone(),
                    allowed: "1 to 200 characters without spaces".into(),
                });
            }
        }
        if kind != SourceKind::Kafka {
            let kafka_only = [
                ("session_timeout_ms", self.session_timeout_ms.is_some()),
                ("heartbeat_interval_ms", self.heartbeat_interval_ms.is_some()),
                ("max_poll_interval_ms", self.max_poll_interval_ms.is_some()),
                ("fetch_min_bytes", self.fetch_min_bytes.is_some()),
                ("options", !self.options.is_empty()),
            ];
            for (k, set) in kafka_only {
                if set {
                    p.push(ConfigProblem {
                        key: format!("{key}.{k}"),
                        value: "(set)".into(),
                        allowed: format!("unset: a Kafka consumer setting, and this source is {}", kind.as_str()),
                    });
                }
            }
        }
        if let Some(v) = self.options.get("enable.auto.commit").filter(|v| v.as_str() != "false") {
            p.push(ConfigProblem {
                key: format!("{key}.options.enable.auto.commit"),
                value: v.clone(),
                allowed: "false or unset: positions are committed only after the hub took the record".into(),
            });
        }
    }
}

/// One upstream name pattern → hub topic rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingConfig {
    /// The upstream name: a Kafka topic, a JetStream subject, a Redis stream key, or the
    /// outbox's `topic` column — with `{name}` placeholders each matching one or more
    /// characters other than `.`, `/` and `:` (`telemetry.{device}`).
    pub upstream: String,
    /// The hub topic, with the upstream's placeholders filled in (`telemetry/{device}`).
    pub topic: String,
    /// Publish this field of a JSON record (a JSON pointer, e.g. `/data`) instead of the whole
    /// record. A record that is not JSON or lacks the field goes to the dead letter.
    #[serde(default)]
    pub payload_field: Option<String>,
    /// Append the record's key as one more topic segment (`topic/<key>`); a record without a key
    /// goes to the topic itself.
    #[serde(default)]
    pub key_suffix: bool,
    /// Copy the record's headers into the message metadata.
    #[serde(default = "yes")]
    pub headers: bool,
    /// Records held between the upstream and the hub for this mapping.
    #[serde(default = "default_buffer")]
    pub max_buffered_messages: u64,
    /// What happens when that buffer is full.
    #[serde(default)]
    pub backpressure_mode: BackpressureMode,
    /// A consumer of its own (its own connection and group) instead of the source's shared one.
    #[serde(default)]
    pub exclusive: Option<ConsumerSettings>,
}

fn yes() -> bool {
    true
}

fn default_buffer() -> u64 {
    1000
}

/// One upstream the hub consumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Unique name: metrics, the admin API and message metadata carry it.
    pub name: String,
    /// Which upstream.
    pub kind: SourceKind,
    /// Where it is (scheme by kind: `kafka://`, `nats://`, `redis://`, `postgres://`).
    pub url: String,
    /// The consumer all mappings share unless they ask for their own.
    #[serde(default)]
    pub consumer: ConsumerSettings,
    /// Hub topic for records that cannot be published (undecodable, too large, no valid topic):
    /// published there as they came, with the reason in the metadata. Unset: dropped and
    /// counted.
    #[serde(default)]
    pub dead_letter: Option<String>,
    /// Where in the upstream itself records that cannot be published are written (besides
    /// `dead_letter` when both are set): a Redis stream (`XADD`), a JetStream subject (a
    /// stream must capture it) or a Kafka topic, with the original payload and the reason.
    /// The record's position is committed only once that write succeeded. Not for `postgres`.
    #[serde(default)]
    pub upstream_dead_letter: Option<String>,
    /// Largest record payload taken, bytes (0: `limits.max_message_size`); larger ones are dead
    /// letters.
    #[serde(default)]
    pub max_record_bytes: u64,
    /// First reconnect delay's cap after a failure, ms (full jitter, doubling).
    #[serde(default = "default_retry_initial")]
    pub retry_initial_ms: u64,
    /// Largest reconnect delay's cap, ms.
    #[serde(default = "default_retry_max")]
    pub retry_max_ms: u64,
    /// NATS: the JetStream stream holding the subjects (required).
    #[serde(default)]
    pub stream: Option<String>,
    /// PostgreSQL: the outbox table (`id bigint` increasing, `topic text`, `key text`,
    /// `headers jsonb`, `payload bytea`).
    #[serde(default = "default_table")]
    pub table: String,
    /// PostgreSQL: the channel `NOTIFY` wakes the consumer on.
    #[serde(default = "default_table")]
    pub channel: String,
    /// PostgreSQL: poll this often even without a notification, ms.
    #[serde(default = "default_poll")]
    pub poll_interval_ms: u64,
    /// Upstream → hub topic rules, tried in order (the first that matches takes the record).
    pub mappings: Vec<MappingConfig>,
}

fn default_retry_initial() -> u64 {
    200
}
fn default_retry_max() -> u64 {
    30_000
}
fn default_table() -> String {
    "fanhub_outbox".into()
}
fn default_poll() -> u64 {
    1000
}

impl SourceConfig {
    /// The group of the shared consumer, or of mapping `i`'s exclusive one.
    pub fn group(&self, mapping: Option<usize>) -> String {
        match mapping {
            None => self.consumer.group.clone().unwrap_or_else(|| format!("fanhub.{}", self.name)),
            Some(i) => self.mappings[i]
                .exclusive
                .as_ref()
                .and_then(|e| e.group.clone())
                .unwrap_or_else(|| format!("fanhub.{}.{i}", self.name)),
        }
    }

    /// Every problem with this source, `key` being its dotted prefix (`sources[0]`).
    pub(crate) fn problems(&self, key: &str, max_message_size: usize, p: &mut Vec<ConfigProblem>) {
        let mut push = |k: &str, v: &str, allowed: &str| {
            p.push(ConfigProblem { key: format!("{key}.{k}"), value: v.into(), allowed: allowed.into() });
        };
        if self.name.is_empty()
            || self.name.len() > 64
            || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            push("name", &self.name, "1 to 64 of A-Z a-z 0-9 _ - .");
        }
        if let Some(feature) = self.kind.missing_feature() {
            push(
                "kind",
                self.kind.as_str(),
                &format!("a kind this build has (build with the cargo feature `{feature}`)"),
            );
        }
        if !self.kind.schemes().iter().any(|s| self.url.starts_with(s) && self.url.len() > s.len()) {
            push("url", &self.url, &format!("a {} URL", self.kind.schemes().join(" or ")));
        }
        if let Some(t) = &self.dead_letter {
            if TopicName::new(t).is_err() {
                push("dead_letter", t, "a valid topic name");
            }
        }
        if let Some(name) = &self.upstream_dead_letter {
            if let Err(allowed) = self.kind.dead_letter_name(name) {
                push("upstream_dead_letter", name, allowed);
            } else if let Some(m) =
                self.mappings.iter().find(|m| Template::parse(&m.upstream).is_ok_and(|t| t.matches(name).is_some()))
            {
                // Its records would come back through that mapping, poison again: a loop.
                push(
                    "upstream_dead_letter",
                    name,
                    &format!("a name no mapping of this source reads ({:?} matches it)", m.upstream),
                );
            }
        }
        if self.max_record_bytes as usize > max_message_size {
            push(
                "max_record_bytes",
                &self.max_record_bytes.to_string(),
                &format!("0..={max_message_size} (limits.max_message_size)"),
            );
        }
        if !(1..=600_000).contains(&self.retry_initial_ms) {
            push("retry_initial_ms", &self.retry_initial_ms.to_string(), "1..=600000");
        }
        if self.retry_max_ms < self.retry_initial_ms || self.retry_max_ms > 3_600_000 {
            push("retry_max_ms", &self.retry_max_ms.to_string(), "retry_initial_ms..=3600000");
        }
        if self.kind == SourceKind::Nats && self.stream.as_deref().is_none_or(str::is_empty) {
            push("stream", "(unset)", "the JetStream stream's name (required for kind nats)");
        }
        if self.kind == SourceKind::Postgres {
            for (k, v) in [("table", &self.table), ("channel", &self.channel)] {
                let ok = !v.is_empty()
                    && v.len() <= 63
                    && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
                    && !v.starts_with(|c: char| c.is_ascii_digit());
                if !ok {
                    push(k, v, "a PostgreSQL identifier (letters, digits, _; schema.table allowed)");
                }
            }
            if !(10..=3_600_000).contains(&self.poll_interval_ms) {
                push("poll_interval_ms", &self.poll_interval_ms.to_string(), "10..=3600000");
            }
        }
        if self.mappings.is_empty() {
            push("mappings", "[]", "one or more mappings");
        }
        self.consumer.problems(&format!("{key}.consumer"), self.kind, p);
        for (i, m) in self.mappings.iter().enumerate() {
            let mk = format!("{key}.mappings[{i}]");
            let mut push = |k: &str, v: &str, allowed: String| {
                p.push(ConfigProblem { key: format!("{mk}.{k}"), value: v.into(), allowed });
            };
            match Template::parse(&m.upstream) {
                Err(e) => push("upstream", &m.upstream, e),
                Ok(up) => match Template::parse(&m.topic) {
                    Err(e) => push("topic", &m.topic, e),
                    Ok(topic) => {
                        if let Some(name) = topic.names().find(|n| !up.names().any(|u| u == *n)) {
                            push(
                                "topic",
                                &m.topic,
                                format!("placeholders of the upstream name only ({{{name}}} is not one)"),
                            );
                        } else if TopicName::new(&topic.fill(|_| "x")).is_err() {
                            push("topic", &m.topic, "a valid topic name once its placeholders are filled".into());
                        }
                    }
                },
            }
            if let Some(f) = &m.payload_field {
                if !f.starts_with('/') {
                    push("payload_field", f, "a JSON pointer, e.g. /data".into());
                }
            }
            if !(1..=1_000_000).contains(&m.max_buffered_messages) {
                push("max_buffered_messages", &m.max_buffered_messages.to_string(), "1..=1000000".into());
            }
            if let Some(e) = &m.exclusive {
                e.problems(&format!("{mk}.exclusive"), self.kind, p);
            }
        }
    }
}

/// Checks the `[[sources]]` list: each source, and names unique.
pub(crate) fn problems(sources: &[SourceConfig], max_message_size: usize, p: &mut Vec<ConfigProblem>) {
    for (i, s) in sources.iter().enumerate() {
        s.problems(&format!("sources[{i}]"), max_message_size, p);
        if sources[..i].iter().any(|o| o.name == s.name) {
            p.push(ConfigProblem {
                key: format!("sources[{i}].name"),
                value: s.name.clone(),
                allowed: "a name no other source has".into(),
            });
        }
    }
}

/// A name with `{placeholder}`s: literal text and placeholders, alternating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Placeholder(String),
}

/// Characters a placeholder never matches: the separators of the upstreams' names and of topics.
fn separator(c: char) -> bool {
    matches!(c, '.' | '/' | ':')
}

impl Template {
    /// Parses `s`: `{name}` placeholders (letters, digits, `_`), not two in a row.
    ///
    /// # Errors
    /// What is wrong, as the allowed-value text of a config problem.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = s;
        if s.is_empty() {
            return Err("a non-empty name".into());
        }
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            } else if matches!(parts.last(), Some(Part::Placeholder(_))) {
                return Err("literal text between placeholders".into());
            }
            let close = rest[open..].find('}').ok_or("a closing } for every {")? + open;
            let name = &rest[open + 1..close];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err("placeholders named with letters, digits and _".into());
            }
            parts.push(Part::Placeholder(name.to_owned()));
            rest = &rest[close + 1..];
        }
        if rest.contains('}') {
            return Err("a { before every }".into());
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// Placeholder names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Placeholder(n) => Some(n.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// True when the template has no placeholder (it names one upstream).
    pub fn is_literal(&self) -> bool {
        self.names().next().is_none()
    }

    /// Matches `name`, returning each placeholder's value (in order).
    pub fn matches<'a>(&self, name: &'a str) -> Option<Vec<(&str, &'a str)>> {
        let mut values = Vec::new();
        let mut rest = name;
        let mut i = 0;
        while i < self.parts.len() {
            match &self.parts[i] {
                Part::Literal(l) => rest = rest.strip_prefix(l.as_str())?,
                Part::Placeholder(n) => {
                    // The value runs to the next separator, or to where the next literal
                    // starts when that literal starts with a non-separator.
                    let end = rest.find(separator).unwrap_or(rest.len());
                    let end = match self.parts.get(i + 1) {
                        Some(Part::Literal(l)) if !l.starts_with(separator) => rest[..end].find(l.as_str())?,
                        _ => end,
                    };
                    if end == 0 {
                        return None;
                    }
                    values.push((n.as_str(), &rest[..end]));
                    rest = &rest[end..];
                }
            }
            i += 1;
        }
        rest.is_empty().then_some(values)
    }

    /// The template with each placeholder replaced by `value(name)`.
    pub fn fill<'v>(&self, mut value: impl FnMut(&str) -> &'v str) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Literal(l) => out.push_str(l),
                Part::Placeholder(n) => out.push_str(value(n)),
            }
        }
        out
    }

    /// The template with every placeholder replaced by `wildcard` (a NATS subject filter with
    /// `*`, a Redis `SCAN MATCH` pattern with `*`).
    pub fn with_wildcards(&self, wildcard: &str) -> String {
        self.fill(|_| wildcard)
    }

    /// A regular expression matching the names the template matches (a Kafka regex
    /// subscription: `^` first).
    pub fn to_regex(&self) -> String {
        let mut out = String::from("^");
        for p in &self.parts {
            match p {
                Part::Literal(l) => {
                    for c in l.chars() {
                        if !c.is_ascii_alphanumeric() && c != '_' {
                            out.push('\\');
                        }
                        out.push(c);
                    }
                }
                Part::Placeholder(_) => out.push_str("[^./:]+"),
            }
        }
        out.push('$');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_matches_names_and_fills_the_topic() {
        let up = Template::parse("telemetry.{device}.{stream}").unwrap();
        let m = up.matches("telemetry.car-7.speed").unwrap();
        assert_eq!(m, [("device", "car-7"), ("stream", "speed")]);
        let topic = Template::parse("telemetry/{device}/{stream}").unwrap();
        let filled = topic.fill(|n| m.iter().find(|(k, _)| *k == n).unwrap().1);
        assert_eq!(filled, "telemetry/car-7/speed");
        assert_eq!(up.matches("telemetry.car-7"), None);
        assert_eq!(up.matches("telemetry..speed"), None);
        assert_eq!(up.matches("telemetry.a.b.c"), None);
        assert_eq!(up.matches("other.a.b"), None);
        assert_eq!(Template::parse("orders").unwrap().matches("orders"), Some(vec![]));
        assert_eq!(Template::parse("orders").unwrap().matches("orders2"), None);
        let mixed = Template::parse("dev-{id}-raw").unwrap();
        assert_eq!(mixed.matches("dev-42-raw"), Some(vec![("id", "42")]));
        assert_eq!(mixed.matches("dev--raw"), None);
    }

    #[test]
    fn templates_turn_into_wildcards_and_regexes() {
        let t = Template::parse("telemetry.{device}").unwrap();
        assert_eq!(t.with_wildcards("*"), "telemetry.*");
        assert_eq!(t.to_regex(), "^telemetry\\.[^./:]+$");
        assert!(!t.is_literal());
        assert!(Template::parse("a.b").unwrap().is_literal());
    }

    #[test]
    fn malformed_templates_are_refused() {
        for bad in ["", "a.{", "a.{}", "a.{x-y}", "a}", "{a}{b}"] {
            assert!(Template::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    fn source(kind: SourceKind, url: &str) -> SourceConfig {
        SourceConfig {
            name: "s".into(),
            kind,
            url: url.into(),
            consumer: ConsumerSettings::default(),
            dead_letter: None,
            upstream_dead_letter: None,
            max_record_bytes: 0,
            retry_initial_ms: 200,
            retry_max_ms: 30_000,
            stream: None,
            table: default_table(),
            channel: default_table(),
            poll_interval_ms: 1000,
            mappings: vec![MappingConfig {
                upstream: "a.{x}".into(),
                topic: "a/{x}".into(),
                payload_field: None,
                key_suffix: false,
                headers: true,
                max_buffered_messages: 10,
                backpressure_mode: BackpressureMode::ApplyBackpressure,
                exclusive: None,
            }],
        }
    }

    #[test]
    fn every_problem_of_a_source_is_listed_with_its_key() {
        let mut s = source(SourceKind::Postgres, "mysql://x");
        s.name = "bad name".into();
        s.table = "1x; drop".into();
        s.dead_letter = Some("a//b".into());
        s.consumer.session_timeout_ms = Some(5000);
        s.mappings[0].topic = "a/{y}".into();
        s.mappings[0].max_buffered_messages = 0;
        s.mappings[0].payload_field = Some("data".into());
        let mut p = Vec::new();
        problems(&[s.clone(), s], 1 << 20, &mut p);
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        for k in [
            "sources[0].name",
            "sources[0].url",
            "sources[0].table",
            "sources[0].dead_letter",
            "sources[0].consumer.session_timeout_ms",
            "sources[0].mappings[0].topic",
            "sources[0].mappings[0].max_buffered_messages",
            "sources[0].mappings[0].payload_field",
        ] {
            assert!(keys.contains(&k), "{k} missing from {keys:?}");
        }
        assert!(p.iter().any(|x| x.key == "sources[1].name" && x.allowed.contains("no other source")), "{p:#?}");
    }

    #[test]
    fn a_good_source_has_no_problem_and_nats_needs_a_stream() {
        let mut p = Vec::new();
        if cfg!(feature = "redis") {
            source(SourceKind::Redis, "redis://127.0.0.1:6379").problems("s", 1 << 20, &mut p);
            assert!(p.is_empty(), "{p:#?}");
        }
        source(SourceKind::Nats, "nats://127.0.0.1:4222").problems("s", 1 << 20, &mut p);
        assert!(p.iter().any(|x| x.key == "s.stream"), "{p:#?}");
        let s = source(SourceKind::Kafka, "kafka://h:9092");
        assert_eq!(s.group(None), "fanhub.s");
        assert_eq!(s.group(Some(0)), "fanhub.s.0");
    }

    /// The problems of a source of `kind` whose upstream dead letter is `name`, on its key.
    fn dead_letter_problems(kind: SourceKind, name: &str) -> Vec<ConfigProblem> {
        let url = match kind {
            SourceKind::Kafka => "kafka://h:9092",
            SourceKind::Nats => "nats://h:4222",
            SourceKind::Redis => "redis://h:6379",
            SourceKind::Postgres => "postgres://u@h/db",
        };
        let mut s = source(kind, url);
        s.stream = Some("S".into());
        s.upstream_dead_letter = Some(name.into());
        let mut p = Vec::new();
        s.problems("sources[0]", 1 << 20, &mut p);
        p.retain(|p| p.key == "sources[0].upstream_dead_letter");
        p
    }

    #[test]
    fn an_upstream_dead_letter_is_refused_for_postgres_with_a_pointer_to_dead_letter() {
        let p = dead_letter_problems(SourceKind::Postgres, "dead");
        assert_eq!(p.len(), 1, "{p:#?}");
        assert_eq!(p[0].value, "dead");
        assert!(p[0].allowed.contains("not supported for postgres"), "{p:#?}");
        assert!(p[0].allowed.contains("use dead_letter (a hub topic)"), "{p:#?}");
    }

    #[test]
    fn upstream_dead_letter_names_follow_each_kind_s_rules() {
        let good = [
            (SourceKind::Redis, "fleet:dead"),
            (SourceKind::Redis, "dead.{x}"),
            (SourceKind::Nats, "dead.fleet"),
            (SourceKind::Kafka, "fleet.dead-letters_1"),
            (SourceKind::Kafka, &"k".repeat(249)),
        ];
        for (kind, name) in good {
            let p = dead_letter_problems(kind, name);
            assert!(p.is_empty(), "{} {name:?}: {p:#?}", kind.as_str());
        }
        let bad = [
            (SourceKind::Redis, "", "Redis stream"),
            (SourceKind::Redis, "dead letters", "Redis stream"),
            (SourceKind::Nats, "", "NATS subject"),
            (SourceKind::Nats, "dead.*", "NATS subject"),
            (SourceKind::Nats, "dead.>", "NATS subject"),
            (SourceKind::Nats, "dead..fleet", "NATS subject"),
            (SourceKind::Nats, ".dead", "NATS subject"),
            (SourceKind::Nats, "dead fleet", "NATS subject"),
            (SourceKind::Kafka, "", "Kafka topic"),
            (SourceKind::Kafka, "dead/fleet", "Kafka topic"),
            (SourceKind::Kafka, "dead fleet", "Kafka topic"),
            (SourceKind::Kafka, "..", "Kafka topic"),
            (SourceKind::Kafka, &"k".repeat(250), "Kafka topic"),
            // A name the source's own mapping (`a.{x}`) reads: its dead letters would loop.
            (SourceKind::Redis, "a.dead", "no mapping"),
            (SourceKind::Nats, "a.dead", "no mapping"),
            (SourceKind::Kafka, "a.dead", "no mapping"),
        ];
        for (kind, name, allowed) in bad {
            let p = dead_letter_problems(kind, name);
            assert_eq!(p.len(), 1, "{} {name:?}: {p:#?}", kind.as_str());
            assert!(p[0].allowed.contains(allowed), "{} {name:?}: {p:#?}", kind.as_str());
        }
    }
}
