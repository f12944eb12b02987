//! The register script's inputs for one REGISTER (single server or Sentinel layout), and the
//! commands the batch collector builds from them: one `FCALL` of the one-AOR function
//! (`register.lua`) for a lone REGISTER, or one `FCALL` of the several-AORs function
//! (`register_many.lua`) for the REGISTERs of one batch, whose reply is split into one reply per
//! REGISTER, each shaped as the one-AOR function's.
//!
//! A Redis Cluster keeps one call per AOR (`cluster.rs`): the keys of one call must share a slot.

use std::sync::Arc;

use ::redis::{Cmd, ErrorKind, RedisError, RedisResult, ServerErrorKind, Value};
use bytes::Bytes;
use sipmesh_protocol::registrar::Aor;

use super::codec::CONTACT_ARGS;
use super::library::RegisterScript;
use crate::fence::FenceCheck;

/// One REGISTER, as the register script takes it.
#[derive(Debug)]
pub(super) struct RegisterCall {
    /// The AOR value key.
    pub(super) aor_key: Vec<u8>,
    /// The AOR's closed-flows marker key.
    pub(super) closed_key: Vec<u8>,
    /// The request's time (wall clock, ms).
    pub(super) now_ms: u64,
    /// `Q`, `S` or `L` (`register.lua`).
    pub(super) mode: &'static str,
    /// The request's Call-ID.
    pub(super) call_id: Bytes,
    /// The request's CSeq number.
    pub(super) cseq: u32,
    /// The contact limit.
    pub(super) max_contacts: usize,
    /// The address-of-record.
    pub(super) aor: Aor,
    /// The lease check of this write (None: unfenced).
    pub(super) fence: Option<FenceCheck>,
    /// The script arguments of each Contact (expiry 0 = removal).
    pub(super) contacts: Vec<[Vec<u8>; CONTACT_ARGS]>,
}

/// The single-server keys every REGISTER shares, and the script.
#[derive(Debug)]
pub(super) struct SingleRegister {
    /// The register library (with its several-AORs entry point).
    pub(super) script: Arc<RegisterScript>,
    /// The expiry index key.
    pub(super) expiry: String,
    /// The binding counter key.
    pub(super) count: String,
    /// The prefix of connection-index keys.
    pub(super) connection: String,
}

impl SingleRegister {
    /// The one-AOR call for `call` (`register.lua` after `layout_single.lua`).
    pub(super) fn one(&self, call: &RegisterCall) -> Cmd {
        let mut cmd = self.script.command();
        cmd.arg(if call.fence.is_some() { 5 } else { 4 })
            .arg(call.aor_key.as_slice())
            .arg(&self.expiry)
            .arg(&self.count)
            .arg(call.closed_key.as_slice());
        if let Some(fence) = &call.fence {
            cmd.arg(&*fence.lease_key);
        }
        cmd.arg(call.now_ms)
            .arg(call.mode)
            .arg(call.call_id.as_ref())
            .arg(call.cseq)
            .arg(call.max_contacts)
            .arg(call.aor.as_bytes())
            .arg(&self.connection);
        match &call.fence {
            Some(fence) => cmd.arg(fence.epoch),
            None => cmd.arg(""),
        };
        contacts(&mut cmd, call);
        cmd
    }

    /// The several-AORs call for `calls`, which share one fence (`register_many.lua`); None
    /// when the script has no such entry point.
    pub(super) fn many<'a>(
        &self,
        calls: impl Iterator<Item = &'a RegisterCall> + Clone,
        fence: Option<&FenceCheck>,
    ) -> Option<Cmd> {
        let mut cmd = self.script.many_command()?;
        let n = calls.clone().count();
        cmd.arg(2 + 2 * n + usize::from(fence.is_some()))
            .arg(&self.expiry)
            .arg(&self.count);
        for call in calls.clone() {
            cmd.arg(call.aor_key.as_slice())
                .arg(call.closed_key.as_slice());
        }
        if let Some(fence) = fence {
            cmd.arg(&*fence.lease_key);
        }
        cmd.arg(&self.connection);
        match fence {
            Some(fence) => cmd.arg(fence.epoch),
            None => cmd.arg(""),
        };
        for call in calls {
            cmd.arg(call.now_ms)
                .arg(call.mode)
                .arg(call.call_id.as_ref())
                .arg(call.cseq)
                .arg(call.max_contacts)
                .arg(call.aor.as_bytes())
                .arg(call.contacts.len());
            contacts(&mut cmd, call);
        }
        Some(cmd)
    }
}

fn contacts(cmd: &mut Cmd, call: &RegisterCall) {
    for items in &call.contacts {
        for item in items {
            cmd.arg(item.as_slice());
        }
    }
}

/// Splits the reply of a several-AORs call for `n` REGISTERs into one reply per REGISTER; an
/// `{'ERR', message}` entry (that REGISTER raised an error) becomes an error for it alone.
pub(super) fn split(reply: RedisResult<Value>, n: usize) -> Vec<RedisResult<Value>> {
    let items = match reply {
        Ok(Value::Array(items)) if items.len() == n => items,
        Ok(other) => {
            let e = RedisError::from((
                ErrorKind::Client,
                "several-AORs register reply",
                format!("expected {n} replies, got {other:?}"),
            ));
            return vec![Err(e); n];
        }
        Err(e) => return vec![Err(e); n],
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::Array(mut entry) if is_error_entry(&entry) => {
                let message = match entry.pop() {
                    Some(Value::BulkString(m)) => String::from_utf8_lossy(&m).into_owned(),
                    _ => String::new(),
                };
                Err(RedisError::from((
                    ErrorKind::Server(ServerErrorKind::ResponseError),
                    "register script error",
                    message,
                )))
            }
            other => Ok(other),
        })
        .collect()
}

fn is_error_entry(entry: &[Value]) -> bool {
    matches!(entry, [Value::BulkString(status), _] if status.as_slice() == b"ERR")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn split_gives_each_register_its_reply() {
        let reply = Value::Array(vec![
            Value::Array(vec![bulk("OK"), Value::Int(1), bulk("v")]),
            Value::Array(vec![bulk("CSEQ")]),
            Value::Array(vec![bulk("ERR"), bulk("boom")]),
        ]);
        let parts = split(Ok(reply), 3);
        assert_eq!(parts.len(), 3);
        assert!(matches!(parts.first(), Some(Ok(Value::Array(v))) if v.len() == 3));
        assert!(matches!(parts.get(1), Some(Ok(Value::Array(v))) if v.len() == 1));
        assert!(matches!(parts.get(2), Some(Err(e)) if e.to_string().contains("boom")));
    }

    #[test]
    fn a_short_or_failed_reply_fails_every_register() {
        let parts = split(Ok(Value::Array(vec![bulk("x")])), 2);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(Result::is_err));
        let e = RedisError::from((ErrorKind::Io, "gone"));
        let parts = split(Err(e), 3);
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(Result::is_err));
    }
}
