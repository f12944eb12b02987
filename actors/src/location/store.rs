//! The location-store interface, shared by the in-memory and (later) Redis implementations.

use std::future::Future;
use std::time::SystemTime;

use sipmesh_protocol::peer::ConnectionId;
use sipmesh_protocol::registrar::{
    Aor, Binding, RegisterError, RegisterOutcome, RegisterRequest, RegistrarPolicy,
};

/// Storage of bindings per AOR.
///
/// Methods return futures so that a networked store (Redis) can implement the trait; the memory
/// store's futures are ready immediately. Every method takes the wall-clock `now` from the
/// caller: bindings carry absolute [`SystemTime`] expiries that other nodes read.
pub trait LocationStore: Send + Sync + 'static {
    /// True when every method's future is ready at once (no I/O): the registrar then runs
    /// requests on the caller's task when it can (see `registrar::RegistrarConfig`); otherwise
    /// every call goes through the AOR's actor and its result comes back later, so a slow store
    /// never stalls signalling.
    const COMPLETES_INLINE: bool = false;

    /// Applies a REGISTER to the stored bindings of `req.aor` atomically (RFC 3261 §10.3 steps
    /// 6–8) and stores the result. A 200 OK may be sent only after this returns `Ok`.
    fn register(
        &self,
        req: RegisterRequest,
        policy: &RegistrarPolicy,
        now: SystemTime,
    ) -> impl Future<Output = Result<RegisterOutcome, StoreError>> + Send;

    /// The live bindings of `aor` at `now` (expired ones are never returned), in stored order.
    fn lookup(
        &self,
        aor: &Aor,
        now: SystemTime,
    ) -> impl Future<Output = Result<Vec<Binding>, StoreError>> + Send;

    /// Removes every flow binding ([`Binding::is_flow`]) that was registered over `connection`
    /// (its flow died, RFC 5626 §5.4) and returns how many were removed. Bindings over that
    /// connection with a dialable Contact stay until they expire.
    fn remove_connection(
        &self,
        connection: ConnectionId,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// Whether `aor` has no live binding at `now` only because its flows closed: bindings that
    /// [`remove_connection`](Self::remove_connection) removed would still be live. The proxy
    /// answers 480 rather than 404 then. Stores that do not track this answer `false`.
    fn flows_closed(
        &self,
        aor: &Aor,
        now: SystemTime,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let _ = (aor, now);
        std::future::ready(Ok(false))
    }

    /// Removes every binding expired at `now` and returns how many were removed.
    fn sweep_expired(
        &self,
        now: SystemTime,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// Counts of stored AORs and bindings, for statistics (may include bindings that expired
    /// but were not swept yet).
    fn stats(&self) -> impl Future<Output = Result<StoreStats, StoreError>> + Send;
}

/// Sizes of a location store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// AORs with at least one binding.
    pub aors: usize,
    /// Bindings over all AORs.
    pub bindings: usize,
}

/// Why a store operation failed.
///
/// [`StoreError::Register`] is the peer's fault and becomes the SIP error response of the
/// REGISTER; [`StoreError::Unavailable`] is ours and becomes 503 with `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The REGISTER broke a registrar rule; nothing was stored.
    #[error("register refused: {0}")]
    Register(#[from] RegisterError),
    /// The store could not be reached or refused to work; nothing is known to be stored.
    #[error("location store unavailable: {0}")]
    Unavailable(UnavailableReason),
}

/// Local causes of [`StoreError::Unavailable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnavailableReason {
    /// The backend did not answer in time.
    #[error("timed out")]
    Timeout,
    /// The connection to the backend is down.
    #[error("disconnected")]
    Disconnected,
    /// This node lost its ownership lease (fencing): another node must write.
    #[error("not the owner")]
    Fenced,
}

impl StoreError {
    /// Seconds for the `Retry-After` header of a 503 caused by a local fault.
    pub const RETRY_AFTER_SECS: u32 = 5;

    /// The SIP status code the REGISTER is answered with.
    pub fn status_code(&self) -> u16 {
        match self {
            Self::Register(e) => e.status_code(),
            Self::Unavailable(_) => 503,
        }
    }

    /// The reason phrase of that response.
    pub fn reason_phrase(&self) -> &'static str {
        match self {
            Self::Register(e) => e.reason_phrase(),
            Self::Unavailable(_) => "Service Unavailable",
        }
    }

    /// `Retry-After` value when the response is a 503 for a local fault.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            Self::Register(_) => None,
            Self::Unavailable(_) => Some(Self::RETRY_AFTER_SECS),
        }
    }
}
