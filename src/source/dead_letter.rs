//! Upstream dead letters (`upstream_dead_letter`): a record that cannot be published is written
//! back into the source's own upstream — a Redis stream, a JetStream subject, a Kafka topic —
//! with its original payload and why, where the services that produce the upstream can see it
//! and replay it with their own tools. The publisher commits the record only after that write
//! succeeded, and retries it with the source's backoff until then ([`super::publish`]).
//!
//! * **Redis**: `XADD <name> * payload <bytes> source … upstream … position … reason … error …
//!   [key …]`: the fields of a dead letter's metadata block, and `payload`/`key` as the Redis
//!   source reads them, so the stream can be consumed again as it is.
//! * **NATS**: a JetStream publish on the subject, its `PubAck` awaited (a subject no stream
//!   captures is an error: the record would be lost), with the record's headers, its key as
//!   the header `key`, and `Fanhub-Source`, `Fanhub-Upstream`, `Fanhub-Position`,
//!   `Fanhub-Reason`, `Fanhub-Error`.
//! * **Kafka**: a produce to the topic, its delivery awaited, with the record's key and headers
//!   and `fanhub-source`, `fanhub-upstream`, `fanhub-partition`, `fanhub-offset`,
//!   `fanhub-reason`, `fanhub-error`.
//!
//! One writer per source, shared by its mappings' publishers. Its connection is opened at the
//! first dead letter (a source without poison never opens one) and dropped after a failed
//! write, so the next attempt connects afresh; a Kafka producer is kept (librdkafka reconnects
//! by itself, and dropping a producer waits for what it still has in flight).

// A build without any of these kinds has no connection to open: what follows `connect` is
// unreachable there, and validation refuses such sources before they start.
#![cfg_attr(
    not(any(feature = "redis", feature = "nats", feature = "kafka")),
    allow(dead_code, unused_variables, unused_mut, clippy::redundant_clone)
)]

use std::time::Duration;

use tokio::sync::Mutex;

use super::lane::UpstreamRecord;
use super::publish::Poison;
use crate::config::{SourceConfig, SourceKind};

/// The longest a connection attempt may take.
#[cfg_attr(not(any(feature = "redis", feature = "nats")), allow(dead_code))]
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest one write may take, until the upstream acknowledged it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a dead letter was not written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// Redis refused the connection or the `XADD` (e.g. the name holds a key of another type).
    #[cfg(feature = "redis")]
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The NATS server is unreachable.
    #[cfg(feature = "nats")]
    #[error("cannot connect to nats: {0}")]
    NatsConnect(#[from] async_nats::ConnectError),
    /// No JetStream stream's subjects include the dead letter's subject.
    #[cfg(feature = "nats")]
    #[error("no JetStream stream captures the subject {0:?}: add it to a stream's subjects")]
    NoStream(String),
    /// The JetStream publish failed or was not acknowledged.
    #[cfg(feature = "nats")]
    #[error("publishing to {0:?}: {1}")]
    NatsPublish(String, async_nats::jetstream::context::PublishError),
    /// librdkafka refused the producer's configuration.
    #[cfg(feature = "kafka")]
    #[error("kafka producer configuration: {0}")]
    KafkaConfig(rdkafka::error::KafkaError),
    /// The record was not delivered.
    #[cfg(feature = "kafka")]
    #[error("producing to {0:?}: {1}")]
    Kafka(String, rdkafka::error::KafkaError),
    /// The upstream did not answer in time.
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    /// This build has not got the source's kind (validation refuses it first).
    #[error("this build cannot write dead letters to {0} upstreams")]
    Unsupported(&'static str),
}

/// An open connection to the upstream.
#[derive(Clone)]
enum Connection {
    #[cfg(feature = "redis")]
    Redis(redis::aio::MultiplexedConnection),
    #[cfg(feature = "nats")]
    Nats(async_nats::jetstream::Context),
    #[cfg(feature = "kafka")]
    Kafka(rdkafka::producer::FutureProducer),
}

impl Connection {
    /// True when the connection may serve again after a failed write.
    fn survives_errors(&self) -> bool {
        match *self {
            #[cfg(feature = "redis")]
            Self::Redis(_) => false,
            #[cfg(feature = "nats")]
            Self::Nats(_) => false,
            #[cfg(feature = "kafka")]
            Self::Kafka(_) => true,
        }
    }
}

/// A source's upstream dead letter: where, and the connection to write there.
pub(crate) struct UpstreamDeadLetter {
    /// The source's name (carried by every dead letter).
    source: String,
    kind: SourceKind,
    url: String,
    /// Kafka: the shared consumer's librdkafka options, so the producer reaches the brokers
    /// as the consumer does (security settings).
    #[cfg(feature = "kafka")]
    options: std::collections::BTreeMap<String, String>,
    /// The stream, subject or topic.
    name: String,
    connection: Mutex<Option<Connection>>,
}

impl std::fmt::Debug for UpstreamDeadLetter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamDeadLetter").field("source", &self.source).field("name", &self.name).finish()
    }
}

impl UpstreamDeadLetter {
    /// The upstream dead letter of `config` (validated), when it has one.
    pub(crate) fn new(config: &SourceConfig) -> Option<Self> {
        let name = config.upstream_dead_letter.clone()?;
        Some(Self {
            source: config.name.clone(),
            kind: config.kind,
            url: config.url.clone(),
            #[cfg(feature = "kafka")]
            options: config.consumer.options.clone(),
            name,
            connection: Mutex::new(None),
        })
    }

    /// The stream, subject or topic written to.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Writes `record` with why it is poison, until the upstream acknowledged it. A failed
    /// write drops the connection (except Kafka's producer): the next one connects again.
    ///
    /// # Errors
    /// The connection or the write failed, or the upstream did not answer within
    /// [`WRITE_TIMEOUT`].
    pub(crate) async fn write(&self, record: &UpstreamRecord, poison: &Poison) -> Result<(), Error> {
        let mut slot = self.connection.lock().await;
        let connection = match &*slot {
            Some(c) => c.clone(),
            None => {
                let c = tokio::time::timeout(WRITE_TIMEOUT, self.connect())
                    .await
                    .unwrap_or(Err(Error::TimedOut(WRITE_TIMEOUT)))?;
                *slot = Some(c.clone());
                c
            }
        };
        // Writes of the source's mappings go one at a time: dead letters are rare, and a
        // broken connection is then replaced once, not by every publisher at the same moment.
        let written = tokio::time::timeout(WRITE_TIMEOUT, self.send(connection, record, poison))
            .await
            .unwrap_or(Err(Error::TimedOut(WRITE_TIMEOUT)));
        if written.is_err() && !slot.as_ref().is_some_and(Connection::survives_errors) {
            *slot = None;
        }
        written
    }

    async fn connect(&self) -> Result<Connection, Error> {
        match self.kind {
            #[cfg(feature = "redis")]
            SourceKind::Redis => {
                let client = redis::Client::open(self.url.as_str())?;
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(WRITE_TIMEOUT));
                Ok(Connection::Redis(client.get_multiplexed_async_connection_with_config(&config).await?))
            }
            #[cfg(feature = "nats")]
            SourceKind::Nats => {
                let client = async_nats::ConnectOptions::new()
                    .name(format!("fanhub {} dead letters", self.source))
                    .connection_timeout(CONNECT_TIMEOUT)
                    .request_timeout(Some(WRITE_TIMEOUT))
                    .connect(self.url.as_str())
                    .await?;
                let mut js = async_nats::jetstream::new(client);
                js.set_timeout(WRITE_TIMEOUT);
                Ok(Connection::Nats(js))
            }
            #[cfg(feature = "kafka")]
            SourceKind::Kafka => {
                let mut cfg = rdkafka::ClientConfig::new();
                for (k, v) in &self.options {
                    cfg.set(k, v);
                }
                cfg.set("bootstrap.servers", super::kafka::brokers(&self.url))
                    .set("client.id", format!("fanhub {} dead letters", self.source))
                    .set("message.timeout.ms", WRITE_TIMEOUT.as_millis().to_string());
                // Consumer properties among the options are ignored by a producer, with a warning.
                cfg.set_log_level(rdkafka::config::RDKafkaLogLevel::Error);
                Ok(Connection::Kafka(cfg.create().map_err(Error::KafkaConfig)?))
            }
            // Unreachable when every kind is built; postgres is refused by validation.
            #[allow(unreachable_patterns)]
            kind => Err(Error::Unsupported(kind.as_str())),
        }
    }

    async fn send(&self, connection: Connection, record: &UpstreamRecord, poison: &Poison) -> Result<(), Error> {
        match connection {
            #[cfg(feature = "redis")]
            Connection::Redis(mut con) => {
                let mut cmd = redis::cmd("XADD");
                cmd.arg(&self.name).arg("*").arg("payload").arg(&record.payload[..]);
                for (field, value) in self.fields(record, poison) {
                    cmd.arg(field).arg(value);
                }
                if let Some(key) = &record.key {
                    cmd.arg("key").arg(key);
                }
                cmd.query_async::<String>(&mut con).await?;
                Ok(())
            }
            #[cfg(feature = "nats")]
            Connection::Nats(js) => {
                use async_nats::jetstream::context::PublishErrorKind;
                let mut headers = async_nats::HeaderMap::new();
                // The record's own headers first, so fanhub's replace any of the same name.
                for (name, value) in &record.headers {
                    if nats_header_name(name) {
                        headers.insert(name.as_str(), value.as_str());
                    }
                }
                if let Some(key) = &record.key {
                    headers.insert("key", key.as_str());
                }
                for (field, value) in self.fields(record, poison) {
                    headers.insert(format!("Fanhub-{}{}", field[..1].to_ascii_uppercase(), &field[1..]), value);
                }
                let failed = |e: async_nats::jetstream::context::PublishError| match e.kind() {
                    PublishErrorKind::StreamNotFound => Error::NoStream(self.name.clone()),
                    _ => Error::NatsPublish(self.name.clone(), e),
                };
                let ack = js
                    .publish_with_headers(self.name.clone(), headers, record.payload.clone())
                    .await
                    .map_err(failed)?;
                ack.await.map_err(failed)?;
                Ok(())
            }
            #[cfg(feature = "kafka")]
            Connection::Kafka(producer) => {
                use rdkafka::message::{Header, OwnedHeaders};
                let mut headers = OwnedHeaders::new_with_capacity(record.headers.len() + 6);
                for (name, value) in &record.headers {
                    headers = headers.insert(Header { key: name, value: Some(value.as_bytes()) });
                }
                // `topic/partition`: the number after the last `/`.
                let partition = record.partition.rsplit('/').next().unwrap_or_default();
                let fanhub = [
                    ("fanhub-source", self.source.as_str()),
                    ("fanhub-upstream", &record.upstream),
                    ("fanhub-partition", partition),
                    ("fanhub-offset", &record.position_text),
                    ("fanhub-reason", poison.reason),
                    ("fanhub-error", &poison.error),
                ];
                for (name, value) in fanhub {
                    headers = headers.insert(Header { key: name, value: Some(value.as_bytes()) });
                }
                let mut out = rdkafka::producer::FutureRecord::<str, [u8]>::to(&self.name)
                    .payload(&record.payload[..])
                    .headers(headers);
                if let Some(key) = &record.key {
                    out = out.key(key.as_str());
                }
                producer
                    .send(out, rdkafka::util::Timeout::After(WRITE_TIMEOUT))
                    .await
                    .map_err(|(e, _)| Error::Kafka(self.name.clone(), e))?;
                Ok(())
            }
        }
    }

    /// What a dead letter's metadata block carries besides the payload and key, by field name.
    #[cfg_attr(not(any(feature = "redis", feature = "nats")), allow(dead_code))]
    fn fields<'a>(&'a self, record: &'a UpstreamRecord, poison: &'a Poison) -> [(&'static str, &'a str); 5] {
        [
            ("source", &self.source),
            ("upstream", &record.upstream),
            ("position", &record.position_text),
            ("reason", poison.reason),
            ("error", &poison.error),
        ]
    }
}

/// True when `name` is a header name NATS takes (visible ASCII, no `:`): a record's header
/// that is not is left out rather than failing the dead letter.
#[cfg(feature = "nats")]
fn nats_header_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_graphic() && c != ':')
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn record() -> UpstreamRecord {
        UpstreamRecord {
            upstream: "events".into(),
            partition: "events".into(),
            position: super::super::Position { major: 1, minor: 2 },
            position_text: "1-2".into(),
            key: Some("k".into()),
            headers: vec![],
            payload: Bytes::from_static(b"not json"),
            token: None,
        }
    }

    #[test]
    fn a_dead_letter_carries_what_the_metadata_block_carries() {
        let mut config = crate::config::Config::from_toml(
            "[[sources]]\nname = \"fleet\"\nkind = \"redis\"\nurl = \"redis://h\"\n\
             upstream_dead_letter = \"fleet.dead\"\n[[sources.mappings]]\nupstream = \"x\"\ntopic = \"x\"\n",
        )
        .expect("source TOML");
        let d = UpstreamDeadLetter::new(&config.sources.remove(0)).expect("configured");
        assert_eq!(d.name(), "fleet.dead");
        let poison = Poison { reason: "payload_field", error: "the record is not JSON".into() };
        let r = record();
        assert_eq!(
            d.fields(&r, &poison),
            [
                ("source", "fleet"),
                ("upstream", "events"),
                ("position", "1-2"),
                ("reason", "payload_field"),
                ("error", "the record is not JSON")
            ]
        );
    }

    #[cfg(feature = "nats")]
    #[test]
    fn header_names_nats_refuses_are_left_out() {
        assert!(nats_header_name("trace-id"));
        assert!(
            !nats_header_name("a b") && !nats_header_name("a:b") && !nats_header_name("") && !nats_header_name("é")
        );
    }
}
