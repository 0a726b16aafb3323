//! The sources view: each upstream source's consumers and mappings, and their metrics.

use axum::extract::State;
use axum::Json;

use super::AdminState;
use crate::http::ErrorBody;
use crate::metrics::{self, Metrics};
use crate::source::{ConsumerState, SourceView};

/// Every configured source: consumers (group, state, last error, failures) and mappings
/// (buffer, pause, lag, counters).
#[utoipa::path(get, path = "/v1/admin/sources",
    responses(
        (status = 200, body = Object, description = "`{\"items\":[{name, kind, url, connected, dead_letter, upstream_dead_letter, consumers[{group, exclusive_mapping, state, state_secs, error, failures}], mappings[{upstream, topic, backpressure_mode, exclusive, buffered, max_buffered, paused, lag, received, bytes, published, dropped{drop_oldest, drop_newest, duplicate, dead_letter}, upstream_dead_letters, upstream_dead_letter_failures, commits, pauses}]}]}`"),
        (status = 401, body = ErrorBody)))]
pub(super) async fn list_sources(State(s): State<AdminState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "items": s.sources.view() }))
}

/// Copies the sources' counters into the scrape (labels: source and mapping names from the
/// configuration).
pub(super) fn record_metrics(m: &Metrics, views: &[SourceView]) {
    for v in views {
        for c in &v.consumers {
            let labels = [("source", v.name.as_str()), ("group", c.group.as_str())];
            m.set_gauge(metrics::SOURCE_UP, &labels, if c.state == ConsumerState::Connected { 1.0 } else { 0.0 });
            m.set_counter(metrics::SOURCE_FAILURES, &labels, c.failures);
        }
        for map in &v.mappings {
            let labels = [("source", v.name.as_str()), ("mapping", map.upstream.as_str())];
            m.set_counter(metrics::SOURCE_RECORDS, &labels, map.received);
            m.set_counter(metrics::SOURCE_BYTES, &labels, map.bytes);
            m.set_counter(metrics::SOURCE_PUBLISHED, &labels, map.published);
            m.set_counter(metrics::SOURCE_UPSTREAM_DEAD_LETTERS, &labels, map.upstream_dead_letters);
            m.set_counter(metrics::SOURCE_UPSTREAM_DEAD_LETTER_FAILURES, &labels, map.upstream_dead_letter_failures);
            m.set_counter(metrics::SOURCE_COMMITS, &labels, map.commits);
            m.set_gauge(metrics::SOURCE_LAG, &labels, map.lag as f64);
            m.set_gauge(metrics::SOURCE_BUFFERED, &labels, map.buffered as f64);
            for (reason, n) in &map.dropped {
                let labels = [("source", v.name.as_str()), ("mapping", map.upstream.as_str()), ("reason", reason)];
                m.set_counter(metrics::SOURCE_DROPPED, &labels, *n);
            }
        }
    }
}
