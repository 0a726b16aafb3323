//! A publisher pool for services that publish at high rates: `n` clients, each with its own
//! connection, reconnecting on its own. A topic always goes through the same client (by a hash
//! of its name), so the order of one topic's publishes is kept; different topics spread over
//! the connections.

use std::hash::{Hash as _, Hasher as _};

use bytes::Bytes;

use super::{Client, ClientError, ClientOptions, Published};

/// `n` publishing clients behind one handle.
#[derive(Debug, Clone)]
pub struct PublisherPool {
    clients: Vec<Client>,
}

impl PublisherPool {
    /// Connects `n` clients with `options` (a `client_id`, if set, gets `-0`, `-1`, … so the
    /// connections do not replace each other).
    ///
    /// # Errors
    /// [`ClientError::InvalidOptions`] for `n` = 0, and whatever [`Client::connect`] returns.
    pub async fn connect(options: ClientOptions, n: usize) -> Result<Self, ClientError> {
        if n == 0 {
            return Err(ClientError::InvalidOptions("a publisher pool needs at least one connection".into()));
        }
        let mut clients = Vec::with_capacity(n);
        for i in 0..n {
            let mut o = options.clone();
            o.client_id = options.client_id.as_ref().map(|id| format!("{id}-{i}"));
            clients.push(Client::connect(o).await?);
        }
        Ok(Self { clients })
    }

    /// The client that carries `topic`.
    pub fn client_for(&self, topic: &str) -> &Client {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        topic.hash(&mut h);
        &self.clients[(h.finish() % self.clients.len() as u64) as usize]
    }

    /// Publishes `payload` on `topic` through its client.
    ///
    /// # Errors
    /// As [`Client::publish`].
    pub async fn publish(&self, topic: &str, payload: impl Into<Bytes>) -> Result<Published, ClientError> {
        self.client_for(topic).publish(topic, payload).await
    }

    /// Publishes a JSON value on `topic` through its client.
    ///
    /// # Errors
    /// As [`Client::publish_json`].
    pub async fn publish_json(&self, topic: &str, value: &serde_json::Value) -> Result<Published, ClientError> {
        self.client_for(topic).publish_json(topic, value).await
    }

    /// Closes every connection.
    pub async fn close(&self) {
        for c in &self.clients {
            c.close().await;
        }
    }
}
