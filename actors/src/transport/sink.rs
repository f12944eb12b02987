//! Where received messages go: the [`InboundSink`] trait.
//!
//! The transport calls [`InboundSink::deliver`] synchronously from its reader tasks, once per
//! event, so an implementation must be cheap and must not block: hash and push onto a shard
//! queue, send on a channel, and return.

use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::warn;

use super::InboundEvent;

/// Receives everything the transport reads.
pub trait InboundSink: Send + Sync + 'static {
    /// Takes one event. Called from transport tasks; must not block.
    fn deliver(&self, event: InboundEvent);
}

/// Adapts a closure into an [`InboundSink`].
#[derive(Debug, Clone)]
pub struct FnSink<F>(pub F);

impl<F> InboundSink for FnSink<F>
where
    F: Fn(InboundEvent) + Send + Sync + 'static,
{
    fn deliver(&self, event: InboundEvent) {
        (self.0)(event);
    }
}

impl InboundSink for mpsc::UnboundedSender<InboundEvent> {
    fn deliver(&self, event: InboundEvent) {
        if self.send(event).is_err() {
            warn!("inbound receiver gone; event dropped");
        }
    }
}

/// A bounded channel: when it is full the event is dropped with a warning rather than blocking
/// the transport.
impl InboundSink for mpsc::Sender<InboundEvent> {
    fn deliver(&self, event: InboundEvent) {
        if let Err(e) = self.try_send(event) {
            warn!(error = %e, "inbound queue unavailable; event dropped");
        }
    }
}

impl<S: InboundSink + ?Sized> InboundSink for Arc<S> {
    fn deliver(&self, event: InboundEvent) {
        (**self).deliver(event);
    }
}
