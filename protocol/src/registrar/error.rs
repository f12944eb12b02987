//! Why a REGISTER is refused: each variant is a peer fault that becomes a SIP response.

/// A REGISTER that must be answered with an error; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// A contact asked for a non-zero expiry below the policy minimum (RFC 3261 §10.3 step 7):
    /// 423, and the response carries `Min-Expires: min_expires`.
    #[error("interval too brief: minimum is {min_expires} s")]
    IntervalTooBrief {
        /// Value for the `Min-Expires` header of the 423.
        min_expires: u32,
    },
    /// Same Call-ID as a stored binding and a CSeq not higher than its (§10.3 steps 6 and 7):
    /// 400, the whole request is rejected.
    #[error("CSeq out of order")]
    CSeqOutOfOrder,
    /// `Contact: *` together with other Contact values (§10.3 step 6): 400.
    #[error("wildcard Contact must be the only Contact")]
    StarWithOtherContacts,
    /// `Contact: *` without `Expires: 0` (§10.3 step 6): 400.
    #[error("wildcard Contact requires Expires: 0")]
    StarWithNonZeroExpires,
    /// The AOR would hold more than `max` bindings. We answer 403 (a policy refusal that a
    /// retry will not cure) rather than 503, which would invite the UA to retry after a delay.
    #[error("too many contacts: at most {max} per AOR")]
    TooManyContacts {
        /// The configured per-AOR limit.
        max: usize,
    },
    /// A contact `q` parameter above 1 (RFC 3261 §20.10 `qvalue`): 400.
    #[error("q-value above 1")]
    InvalidQValue,
    /// now + expiry cannot be represented as a `SystemTime` (a broken clock): 500.
    #[error("expiry time overflows the clock")]
    ExpiryOverflow,
}

impl RegisterError {
    /// The SIP status code of the response.
    pub fn status_code(&self) -> u16 {
        match self {
            Self::IntervalTooBrief { .. } => 423,
            Self::CSeqOutOfOrder
            | Self::StarWithOtherContacts
            | Self::StarWithNonZeroExpires
            | Self::InvalidQValue => 400,
            Self::TooManyContacts { .. } => 403,
            Self::ExpiryOverflow => 500,
        }
    }

    /// The reason phrase of the response: precise, so a UA's log says what was wrong.
    pub fn reason_phrase(&self) -> &'static str {
        match self {
            Self::IntervalTooBrief { .. } => "Interval Too Brief",
            Self::CSeqOutOfOrder => "CSeq out of order",
            Self::StarWithOtherContacts => "Wildcard Contact must be alone",
            Self::StarWithNonZeroExpires => "Wildcard Contact requires Expires: 0",
            Self::TooManyContacts { .. } => "Too Many Contacts",
            Self::InvalidQValue => "Invalid q-value",
            Self::ExpiryOverflow => "Server Internal Error",
        }
    }

    /// The `Min-Expires` header value the response must carry, if any (RFC 3261 §20.23).
    pub fn min_expires(&self) -> Option<u32> {
        match self {
            Self::IntervalTooBrief { min_expires } => Some(*min_expires),
            _ => None,
        }
    }
}
