//! Owner notices (issue 5, per-key ownership): messages on a node's owner-index channel
//! (the channel has the name of its index key, `P by-owner:<lease key>`; channels and keys are
//! separate name spaces), so that a dialog's actor lives on its owner without waiting for a
//! rebalance:
//!
//! - `adopt <record key>`: published by a node that confirmed a dialog it does not own
//!   ([`DialogStore::hand_over`](super::super::store::DialogStore::hand_over)); the owner reads
//!   the record and adopts it;
//! - `ended <record key>`: published by the remove script when a node removes a record whose
//!   `owner` is another node (a BYE through a visitor); that owner stops its actor.
//!
//! On single-server and Sentinel URLs (the subscription follows the master the sentinels name,
//! [`RedisEndpoint::subscription_target`](crate::redis_endpoint::RedisEndpoint::subscription_target));
//! on a Redis Cluster a hand-over reaches nobody and the creating node keeps the dialog (the
//! rebalance moves it later), and an ended dialog's actor stops at its own timer (the record is
//! gone), as before.

use std::time::Duration;

use futures_util::StreamExt;
use sipmesh_protocol::dialog::DialogId;
use tracing::debug;

use super::super::store::{DialogStoreError, EXPIRY_MARGIN};
use super::{IndexedRecord, RedisDialogStore};

/// First word of a hand-over notice.
pub const ADOPT: &str = "adopt";
/// First word of an "ended elsewhere" notice.
pub const ENDED: &str = "ended";
/// Pause before a lost subscription is opened again.
const RESUBSCRIBE: Duration = Duration::from_millis(500);

/// One message on an owner-index channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Take over the dialog stored under this record key.
    Adopt(String),
    /// The dialog was removed by another node: stop its actor.
    Ended(DialogId),
}

impl Notice {
    /// Reads a message; `prefix` is the record key prefix of the store. None when malformed.
    pub fn parse(text: &str, prefix: &str) -> Option<Self> {
        let (word, key) = text.split_once(' ')?;
        match word {
            ADOPT => Some(Self::Adopt(key.to_owned())),
            ENDED => {
                let id = key.strip_prefix(prefix)?;
                // On a Cluster the id would be hash-tagged; notices are single-server only.
                DialogId::parse_key(id).ok().map(Self::Ended)
            }
            _ => None,
        }
    }
}

impl RedisDialogStore {
    /// The record stored under Redis key `key` with its time left (`None` when it is gone).
    pub async fn record_at(&self, key: &str) -> Result<Option<IndexedRecord>, DialogStoreError> {
        let mut conn = self.conn.clone();
        let mut pipe = ::redis::pipe();
        pipe.cmd("HGETALL").arg(key).cmd("PTTL").arg(key);
        let (fields, pttl): (std::collections::HashMap<String, String>, i64) =
            self.bounded(pipe.query_async(&mut conn)).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let state = super::record::decode(&fields)?;
        let life = Duration::from_millis(u64::try_from(pttl).unwrap_or(0));
        Ok(Some(IndexedRecord {
            key: key.to_owned(),
            state,
            remaining: life.saturating_sub(EXPIRY_MARGIN),
        }))
    }

    /// The record key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Follows this node's owner-index channel on the server holding the records (a single
    /// server, or the master the sentinels name, followed across failovers: the subscription
    /// is opened again on the new master as soon as the store's endpoint connects to it) and
    /// calls `on_notice` for every notice, until the task is aborted; a lost subscription is
    /// opened again after 0.5 s. Does nothing (returns at once) without an owner index (or on a
    /// Redis Cluster).
    pub async fn follow_notices(&self, mut on_notice: impl FnMut(Notice)) {
        let Some(channel) = self.own_index() else {
            return;
        };
        let Some(mut target) = self.conn.subscription_target() else {
            return;
        };
        loop {
            let Some(client) = target.current().await else {
                return;
            };
            match client.get_async_pubsub().await {
                Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                    Ok(()) => {
                        debug!("following dialog owner notices");
                        let mut messages = pubsub.on_message();
                        let moved = loop {
                            let m = tokio::select! {
                                m = messages.next() => m,
                                () = target.moved() => {
                                    debug!("the Redis master changed: subscribing again");
                                    break true;
                                }
                            };
                            let Some(m) = m else {
                                debug!("dialog owner notice subscription lost");
                                break false;
                            };
                            let Ok(text) = m.get_payload::<String>() else {
                                continue;
                            };
                            match Notice::parse(&text, &self.prefix) {
                                Some(n) => on_notice(n),
                                None => debug!(%text, "ignoring a malformed dialog notice"),
                            }
                        };
                        if moved {
                            continue;
                        }
                    }
                    Err(e) => debug!(error = %e, "subscribing to dialog owner notices failed"),
                },
                Err(e) => debug!(error = %e, "no connection for dialog owner notices"),
            }
            tokio::time::sleep(RESUBSCRIBE).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_read_back() {
        assert_eq!(
            Notice::parse("adopt sipmesh:dlg:c@h;a;b", "sipmesh:dlg:"),
            Some(Notice::Adopt("sipmesh:dlg:c@h;a;b".to_owned()))
        );
        assert_eq!(
            Notice::parse("ended sipmesh:dlg:c@h;a;b", "sipmesh:dlg:"),
            Some(Notice::Ended(DialogId::new("c@h", "a", "b")))
        );
        assert_eq!(Notice::parse("ended other:c;a;b", "sipmesh:dlg:"), None);
        assert_eq!(Notice::parse("hello", "sipmesh:dlg:"), None);
        assert_eq!(Notice::parse("nope x", "sipmesh:dlg:"), None);
    }
}
