//! Publishing on behalf of the server side (the HTTP publish API): through the node's broker,
//! waiting like a client's publish while a `reliable` + `apply_backpressure` subscriber is
//! full, up to the policy's timeout, on the server's clock.

use super::HubContext;
use crate::hub::{PublishError, PublishReport, TopicName};

/// Publishes `payload` on `topic` as a trusted server-side source: in memory, routed here
/// (with backpressure waits); in cluster mode, through Redis.
///
/// # Errors
/// [`PublishError`]; `BackpressureTimeout` when a full subscriber did not drain in time.
pub async fn publish(
    ctx: &HubContext,
    topic: &TopicName,
    payload: &[u8],
    flags: u8,
) -> Result<PublishReport, PublishError> {
    publish_from(ctx, topic, payload, flags, None).await
}

/// [`publish`] for an upstream source: in cluster mode the record is published only past its
/// `position` in the source's ledger in Redis (offset 0 answers one that is not). In memory
/// mode the source's own ledger decides, and `position` is not needed.
///
/// # Errors
/// As [`publish`].
pub async fn publish_from(
    ctx: &HubContext,
    topic: &TopicName,
    payload: &[u8],
    flags: u8,
    position: Option<crate::broker::SourcePosition>,
) -> Result<PublishReport, PublishError> {
    if ctx.broker.is_clustered() {
        ctx.manager.check_fits(topic, payload.len())?;
        return ctx.broker.publish(topic, payload, flags, position).await;
    }
    let mut deadline = None;
    loop {
        let now = ctx.clock.now();
        match ctx.manager.route_data(topic, payload, flags, now) {
            Err(PublishError::Backpressure { topic, waiting_for, timeout }) => {
                let deadline = *deadline.get_or_insert(now.mono + timeout);
                if now.mono >= deadline {
                    return Err(PublishError::BackpressureTimeout(topic));
                }
                tokio::select! {
                    () = waiting_for.core().outbound.space_freed() => {}
                    () = ctx.clock.sleep_until(deadline) => return Err(PublishError::BackpressureTimeout(topic)),
                }
            }
            other => return other,
        }
    }
}
