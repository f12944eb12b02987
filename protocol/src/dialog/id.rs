//! The dialog identifier (RFC 3261 §12): Call-ID, local tag and remote tag. A proxy has no
//! "local" side, so the tags are named by role: the caller's tag is the From tag of the
//! dialog-creating INVITE, the callee's tag the To tag of the response that created it.

use std::fmt;

use thiserror::Error;

/// Identifies one dialog, oriented caller → callee.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DialogId {
    /// The Call-ID.
    pub call_id: String,
    /// From tag of the dialog-creating request.
    pub caller_tag: String,
    /// To tag of the response that created the dialog.
    pub callee_tag: String,
}

/// Why a printable dialog key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DialogIdError {
    /// The key does not have three `;`-separated parts.
    #[error("a dialog key is call-id;caller-tag;callee-tag")]
    MissingPart,
    /// One of the parts is empty.
    #[error("empty part in a dialog key")]
    EmptyPart,
}

impl DialogId {
    /// A dialog id from its three parts.
    pub fn new(
        call_id: impl Into<String>,
        caller_tag: impl Into<String>,
        callee_tag: impl Into<String>,
    ) -> Self {
        Self {
            call_id: call_id.into(),
            caller_tag: caller_tag.into(),
            callee_tag: callee_tag.into(),
        }
    }

    /// The same dialog seen from the callee (tags swapped). An in-dialog request carries the
    /// sender's tag in From, so a request from the callee names the dialog this way round.
    pub fn reversed(&self) -> Self {
        Self {
            call_id: self.call_id.clone(),
            caller_tag: self.callee_tag.clone(),
            callee_tag: self.caller_tag.clone(),
        }
    }

    /// The printable key `call-id;caller-tag;callee-tag`, used by the test hook and as the
    /// Redis key suffix. Neither a Call-ID (RFC 3261 §25.1 `word`) nor a tag (`token`) can
    /// contain `;`, so the key is unambiguous.
    pub fn key(&self) -> String {
        self.to_string()
    }

    /// Reads a key written by [`key`](Self::key). The Call-ID may contain `@`; the split is
    /// from the right so only the last two `;` separate tags.
    pub fn parse_key(key: &str) -> Result<Self, DialogIdError> {
        let mut parts = key.rsplitn(3, ';');
        let callee = parts.next().ok_or(DialogIdError::MissingPart)?;
        let caller = parts.next().ok_or(DialogIdError::MissingPart)?;
        let call_id = parts.next().ok_or(DialogIdError::MissingPart)?;
        if call_id.is_empty() || caller.is_empty() || callee.is_empty() {
            return Err(DialogIdError::EmptyPart);
        }
        Ok(Self::new(call_id, caller, callee))
    }
}

impl fmt::Display for DialogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{};{};{}",
            self.call_id, self.caller_tag, self.callee_tag
        )
    }
}
