//! Topics: the registry of declared topic metadata and the live topic map.
//!
//! The map from name to [`Topic`] is a sharded `DashMap`, so lookups take no global lock. A new
//! topic gets its policy and history bounds from the first declaration whose pattern matches,
//! and a fresh epoch drawn from the registry's seeded generator (the seed is the caller's:
//! nothing here draws randomness of its own).

use std::sync::Arc;
use std::time::Instant;

use dashmap::DashMap;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::{Deserialize, Serialize};

use super::history::{History, HistoryLimits};
use super::name::{TopicError, TopicName, TopicPattern};
use super::policy::DeliveryPolicy;
use super::stats::TopicCounters;
use super::topic::{Topic, TopicInfo, TopicState};

/// A topic declaration from the configuration: metadata for every topic its pattern matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicDecl {
    /// Topic name or pattern (`video/*`, `telemetry/>`).
    pub pattern: String,
    /// Delivery policy (default: `topics.default_policy`).
    #[serde(default)]
    pub policy: Option<DeliveryPolicy>,
    /// History bounds (default: `topics.default_history`).
    #[serde(default)]
    pub history: Option<HistoryLimits>,
    /// Most subscribers at once (default: unlimited).
    #[serde(default)]
    pub max_subscribers: Option<usize>,
    /// Token subjects allowed to publish (in addition to the token's publish claims);
    /// absent: anyone whose claims allow it. Server-side publishes are always allowed.
    #[serde(default)]
    pub publishers: Option<Vec<String>>,
    /// Free text for operators.
    #[serde(default)]
    pub description: Option<String>,
}

/// Topic configuration of the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    /// Whether topics that match no declaration may be used.
    pub allow_undeclared: bool,
    /// Most topics alive at once.
    pub max_topics: usize,
    /// Policy of topics without a declared one.
    pub default_policy: DeliveryPolicy,
    /// History bounds of topics without declared ones.
    pub default_history: HistoryLimits,
    /// Declarations; the first whose pattern matches a topic applies.
    pub declare: Vec<TopicDecl>,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        Self {
            allow_undeclared: true,
            max_topics: 100_000,
            default_policy: DeliveryPolicy::default(),
            default_history: HistoryLimits::default(),
            declare: Vec::new(),
        }
    }
}

/// The metrics label of undeclared topics.
pub const OTHER_TOPICS_LABEL: &str = "_other";

/// Why a topic could not be looked up or created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicAccessError {
    /// No declaration matches and undeclared topics are off.
    #[error("topic {0} is not declared and undeclared topics are disabled")]
    Undeclared(TopicName),
    /// `max_topics` reached.
    #[error("the hub has reached its limit of {0} topics")]
    TooMany(usize),
}

/// Declared metadata and the live topics.
#[derive(Debug)]
pub struct TopicRegistry {
    topics: DashMap<TopicName, Arc<Topic>>,
    /// Policies set at run time (admin API, or another node through the broker): they outlive
    /// the topic's removal by the sweeper, and a topic created later starts with its override.
    /// At most `max_topics` entries.
    overrides: DashMap<TopicName, DeliveryPolicy>,
    decls: Vec<(TopicPattern, Arc<TopicDecl>, Arc<TopicCounters>)>,
    other: Arc<TopicCounters>,
    config: TopicsConfig,
    epochs: Mutex<StdRng>,
}

impl TopicRegistry {
    /// Builds the registry, validating every declaration. Epochs are drawn from a generator
    /// seeded with `epoch_seed`.
    ///
    /// # Errors
    /// The first invalid pattern or policy, as `(index, message)`.
    pub fn new(config: TopicsConfig, epoch_seed: u64) -> Result<Self, (usize, String)> {
        let mut decls = Vec::with_capacity(config.declare.len());
        for (i, d) in config.declare.iter().enumerate() {
            let p = TopicPattern::new(&d.pattern).map_err(|e: TopicError| (i, format!("pattern: {e}")))?;
            if let Some(policy) = &d.policy {
                policy.validate().map_err(|e| (i, e.to_string()))?;
            }
            decls.push((p, Arc::new(d.clone()), Arc::default()));
        }
        config.default_policy.validate().map_err(|e| (usize::MAX, e.to_string()))?;
        Ok(Self {
            topics: DashMap::new(),
            overrides: DashMap::new(),
            decls,
            other: Arc::default(),
            config,
            epochs: Mutex::new(StdRng::seed_from_u64(epoch_seed)),
        })
    }

    /// A new epoch: non-zero, and below 2^53 so JavaScript clients hold it exactly.
    pub fn new_epoch(&self) -> u64 {
        (self.epochs.lock().random::<u64>() >> 11).max(1)
    }

    /// The declaration that applies to `name`, if any.
    pub fn declaration(&self, name: &TopicName) -> Option<&Arc<TopicDecl>> {
        self.decls.iter().find(|(p, _, _)| p.matches(name)).map(|(_, d, _)| d)
    }

    /// Traffic counters per metrics label: each declaration's pattern, then [`OTHER_TOPICS_LABEL`].
    pub fn label_counters(&self) -> impl Iterator<Item = (&str, &TopicCounters)> {
        self.decls
            .iter()
            .map(|(_, d, c)| (d.pattern.as_str(), &**c))
            .chain(std::iter::once((OTHER_TOPICS_LABEL, &*self.other)))
    }

    /// The policy a topic has, or would get if created now.
    pub fn policy_for(&self, name: &TopicName) -> DeliveryPolicy {
        if let Some(t) = self.get(name) {
            return t.state.lock().policy.clone();
        }
        self.initial_policy(name, self.declaration(name))
    }

    /// The policy a topic starts with: its run-time override, else its declaration's, else the
    /// default.
    fn initial_policy(&self, name: &TopicName, decl: Option<&Arc<TopicDecl>>) -> DeliveryPolicy {
        if let Some(p) = self.overrides.get(name) {
            return p.clone();
        }
        decl.and_then(|d| d.policy.clone()).unwrap_or_else(|| self.config.default_policy.clone())
    }

    /// Whether `name` may be used at all (declared, or undeclared topics allowed).
    ///
    /// # Errors
    /// [`TopicAccessError::Undeclared`].
    pub fn check_declared(&self, name: &TopicName) -> Result<(), TopicAccessError> {
        if self.declaration(name).is_none() && !self.config.allow_undeclared {
            return Err(TopicAccessError::Undeclared(name.clone()));
        }
        Ok(())
    }

    /// Drops `name`'s run-time policy: the live topic, if any, goes back to its declaration's
    /// (or the default) from its next message. Returns the policy now in force.
    pub fn clear_override(&self, name: &TopicName) -> DeliveryPolicy {
        self.overrides.remove(name);
        let policy = self.initial_policy(name, self.declaration(name));
        if let Some(t) = self.get(name) {
            t.state.lock().policy = policy.clone();
        }
        policy
    }

    /// The topics that have a run-time policy.
    pub fn overridden(&self) -> Vec<TopicName> {
        self.overrides.iter().map(|e| e.key().clone()).collect()
    }

    /// Records a run-time policy for `name` and applies it to the live topic, if any, from its
    /// next message. The policy must have been validated.
    ///
    /// # Errors
    /// [`TopicAccessError`] when the topic may not be used, or `max_topics` overrides exist.
    pub fn set_override(&self, name: &TopicName, policy: DeliveryPolicy) -> Result<(), TopicAccessError> {
        self.check_declared(name)?;
        if !self.overrides.contains_key(name) && self.overrides.len() >= self.config.max_topics {
            return Err(TopicAccessError::TooMany(self.config.max_topics));
        }
        self.overrides.insert(name.clone(), policy.clone());
        if let Some(t) = self.get(name) {
            t.state.lock().policy = policy;
        }
        Ok(())
    }

    /// The history bounds a topic has, or would get if created now.
    pub fn history_for(&self, name: &TopicName) -> HistoryLimits {
        if let Some(t) = self.get(name) {
            return t.state.lock().history.limits();
        }
        self.declaration(name).and_then(|d| d.history).unwrap_or(self.config.default_history)
    }

    /// The live topic called `name`.
    pub fn get(&self, name: &TopicName) -> Option<Arc<Topic>> {
        self.topics.get(name).map(|t| t.clone())
    }

    /// The live topic called `name`, created if allowed.
    ///
    /// # Errors
    /// [`TopicAccessError`] when undeclared topics are off or the topic limit is reached.
    pub fn get_or_create(&self, name: &TopicName) -> Result<Arc<Topic>, TopicAccessError> {
        if let Some(t) = self.get(name) {
            return Ok(t);
        }
        let found = self.decls.iter().find(|(p, _, _)| p.matches(name));
        let decl = found.map(|(_, d, _)| d.clone());
        let counters = found.map_or_else(|| self.other.clone(), |(_, _, c)| c.clone());
        if decl.is_none() && !self.config.allow_undeclared {
            return Err(TopicAccessError::Undeclared(name.clone()));
        }
        if self.topics.len() >= self.config.max_topics {
            return Err(TopicAccessError::TooMany(self.config.max_topics));
        }
        let policy = self.initial_policy(name, decl.as_ref());
        let history = decl.as_ref().and_then(|d| d.history).unwrap_or(self.config.default_history);
        let topic = self
            .topics
            .entry(name.clone())
            .or_insert_with(|| {
                Arc::new(Topic {
                    name: name.clone(),
                    declared: decl.is_some(),
                    max_subscribers: decl.as_ref().and_then(|d| d.max_subscribers),
                    counters,
                    state: Mutex::new(TopicState::new(policy, History::new(history), self.new_epoch())),
                })
            })
            .clone();
        Ok(topic)
    }

    /// Names of the live topics.
    pub fn names(&self) -> Vec<TopicName> {
        self.topics.iter().map(|t| t.key().clone()).collect()
    }

    /// Number of live topics.
    pub fn len(&self) -> usize {
        self.topics.len()
    }

    /// True when no topic is alive.
    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }

    /// Snapshots of all live topics.
    pub fn infos(&self) -> Vec<TopicInfo> {
        let topics: Vec<Arc<Topic>> = self.topics.iter().map(|t| t.clone()).collect();
        topics.iter().map(|t| t.info()).collect()
    }

    /// Removes topics with no subscribers whose history has expired, so an idle topic space
    /// does not grow without bound. A removed topic that is used again starts a new epoch.
    /// Returns how many were removed.
    pub fn sweep(&self, now: Instant) -> usize {
        let candidates: Vec<Arc<Topic>> = self.topics.iter().map(|t| t.clone()).collect();
        let mut removed = 0;
        for t in candidates {
            let mut st = t.state.lock();
            st.history.trim(now);
            if st.subscribers().is_empty() && st.history.is_empty() && !st.dead {
                st.dead = true;
                self.topics.remove(&t.name);
                removed += 1;
            }
        }
        removed
    }
}
