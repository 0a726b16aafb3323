//! A publisher pool for services that publish at high rates: `n` clients, each with its own
//! connection, reconnecting on its own. A publish goes to the connection with the fewest
//! publishes in flight — unless its topic already has publishes in flight, which it then
//! follows, so one topic's publishes keep their order. The placement only holds topics with
//! publishes in flight, so it stays as small as the work in progress.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use super::{Client, ClientError, ClientOptions, Published};

#[derive(Debug, Default)]
struct Placement {
    /// Topics with publishes in flight: their connection and how many.
    topics: HashMap<String, (usize, u32)>,
    /// Publishes in flight per connection.
    load: Vec<u32>,
    /// Publishes sent per connection, ever.
    sent: Vec<u64>,
}

/// `n` publishing clients behind one handle.
#[derive(Debug, Clone)]
pub struct PublisherPool {
    clients: Vec<Client>,
    placement: Arc<Mutex<Placement>>,
}

/// One publish's place; dropping it (answered, failed or cancelled) frees it.
struct Slot {
    placement: Arc<Mutex<Placement>>,
    topic: String,
    index: usize,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut p = self.placement.lock();
        p.load[self.index] -= 1;
        if let Some((_, n)) = p.topics.get_mut(&self.topic) {
            *n -= 1;
            if *n == 0 {
                p.topics.remove(&self.topic);
            }
        }
    }
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
        let placement = Placement { topics: HashMap::new(), load: vec![0; n], sent: vec![0; n] };
        Ok(Self { clients, placement: Arc::new(Mutex::new(placement)) })
    }

    /// Picks `topic`'s connection: the one its publishes in flight use, else the least loaded.
    fn place(&self, topic: &str) -> (&Client, Slot) {
        let mut p = self.placement.lock();
        let index = match p.topics.get_mut(topic) {
            Some((i, n)) => {
                *n += 1;
                *i
            }
            None => {
                let i = (0..p.load.len()).min_by_key(|&i| p.load[i]).unwrap_or(0);
                p.topics.insert(topic.to_owned(), (i, 1));
                i
            }
        };
        p.load[index] += 1;
        p.sent[index] += 1;
        (&self.clients[index], Slot { placement: self.placement.clone(), topic: topic.to_owned(), index })
    }

    /// Publishes sent through each connection so far (how the pool spread them).
    pub fn sent(&self) -> Vec<u64> {
        self.placement.lock().sent.clone()
    }

    /// Publishes `payload` on `topic`.
    ///
    /// # Errors
    /// As [`Client::publish`].
    pub async fn publish(&self, topic: &str, payload: impl Into<Bytes>) -> Result<Published, ClientError> {
        let (client, _slot) = self.place(topic);
        client.publish(topic, payload).await
    }

    /// Publishes a JSON value on `topic`.
    ///
    /// # Errors
    /// As [`Client::publish_json`].
    pub async fn publish_json(&self, topic: &str, value: &serde_json::Value) -> Result<Published, ClientError> {
        let (client, _slot) = self.place(topic);
        client.publish_json(topic, value).await
    }

    /// Closes every connection.
    pub async fn close(&self) {
        for c in &self.clients {
            c.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_frees_its_connection_and_a_topic_is_forgotten_when_nothing_of_it_is_in_flight() {
        let placement = Arc::new(Mutex::new(Placement { topics: HashMap::new(), load: vec![0; 2], sent: vec![0; 2] }));
        {
            let mut p = placement.lock();
            p.topics.insert("t".into(), (1, 2));
            p.load[1] = 2;
        }
        let a = Slot { placement: placement.clone(), topic: "t".into(), index: 1 };
        let b = Slot { placement: placement.clone(), topic: "t".into(), index: 1 };
        drop(a);
        assert_eq!(placement.lock().topics.get("t"), Some(&(1, 1)));
        drop(b);
        let p = placement.lock();
        assert!(p.topics.is_empty());
        assert_eq!(p.load, [0, 0]);
    }
}
