//! What an AOR actor keeps between requests: its bindings as the store last reported them, and
//! the generation of its one expiry timer.

use std::time::SystemTime;

use sipmesh_protocol::registrar::Binding;

/// The bindings of one AOR as the store last reported them, or (when lookups are not served
/// from the cache) only their count and earliest expiry, which is all the expiry timer needs.
#[derive(Debug, Default)]
pub(crate) struct BindingCache {
    /// Bindings in stored order (may hold expired ones until the expiry timer prunes them);
    /// empty unless `keep`.
    bindings: Vec<Binding>,
    /// Whether to keep the bindings themselves (to serve lookups).
    keep: bool,
    /// Number of bindings the store last reported.
    count: usize,
    /// Their earliest expiry.
    next: Option<SystemTime>,
    /// Whether the above is known to match the store: false until a load succeeds, and again
    /// after a write whose outcome is unknown (the store timed out or went away).
    valid: bool,
}

impl BindingCache {
    /// A cache that knows nothing yet; `keep`: hold the bindings to serve lookups.
    pub(crate) fn unknown(keep: bool) -> Self {
        Self {
            keep,
            ..Self::default()
        }
    }

    /// Replaces the bindings with the store's latest answer.
    pub(crate) fn set(&mut self, bindings: &[Binding]) {
        self.count = bindings.len();
        self.next = bindings.iter().map(|b| b.expires_at).min();
        if self.keep {
            bindings.clone_into(&mut self.bindings);
        }
        self.valid = true;
    }

    /// Forgets everything: a write may or may not have reached the store.
    pub(crate) fn invalidate(&mut self) {
        self.bindings.clear();
        self.count = 0;
        self.next = None;
        self.valid = false;
    }

    /// The live bindings if the cache may answer a lookup: it keeps bindings, is valid and
    /// holds no flow binding ([`Binding::is_flow`]), since a closed connection removes those
    /// from the store without telling this actor. `None` means "ask the store".
    pub(crate) fn serve(&self, now: SystemTime) -> Option<Vec<Binding>> {
        if !self.keep || !self.valid || self.bindings.iter().any(Binding::is_flow) {
            return None;
        }
        let live: Vec<Binding> = self
            .bindings
            .iter()
            .filter(|b| !b.is_expired(now))
            .cloned()
            .collect();
        // An empty answer goes to the store, which alone can tell 480 (flows closed) from 404.
        (!live.is_empty()).then_some(live)
    }

    /// Whether [`Self::prune`] can work from the cache alone (else the expiry timer re-reads
    /// the store).
    pub(crate) fn keeps(&self) -> bool {
        self.keep
    }

    /// Drops the bindings expired at `now` (only when it keeps them); returns how many.
    pub(crate) fn prune(&mut self, now: SystemTime) -> usize {
        let before = self.bindings.len();
        self.bindings.retain(|b| !b.is_expired(now));
        self.count = self.bindings.len();
        self.next = self.bindings.iter().map(|b| b.expires_at).min();
        before - self.bindings.len()
    }

    /// The earliest expiry among the bindings.
    pub(crate) fn next_expiry(&self) -> Option<SystemTime> {
        self.next
    }

    /// Whether the cache is known to match the store.
    pub(crate) fn is_valid(&self) -> bool {
        self.valid
    }

    /// Number of bindings the store last reported (less those pruned since).
    pub(crate) fn len(&self) -> usize {
        self.count
    }
}

/// The generation counter of an actor's single expiry timer. Every re-arm starts a new
/// generation; a timer message carrying an older one is stale (its timer was replaced after it
/// had already fired) and is ignored.
#[derive(Debug, Default)]
pub(crate) struct ExpiryGeneration {
    /// The generation of the armed timer.
    current: u64,
    /// The expiry the armed timer is for, if one is armed.
    armed_for: Option<SystemTime>,
}

impl ExpiryGeneration {
    /// Whether the timer must be re-armed for `next` (the earliest expiry now): when none is
    /// armed, or `next` is earlier than the armed one. A later `next` keeps the armed timer,
    /// which then fires early, finds nothing to prune and re-arms: cheaper than replacing the
    /// timer on every refresh.
    pub(crate) fn needs_rearm(&self, next: Option<SystemTime>) -> bool {
        match (self.armed_for, next) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(armed), Some(next)) => next < armed,
        }
    }

    /// Starts a new generation for a timer at `at` and returns its number.
    pub(crate) fn arm(&mut self, at: SystemTime) -> u64 {
        self.current = self.current.wrapping_add(1);
        self.armed_for = Some(at);
        self.current
    }

    /// The generation of the armed (or last) timer.
    #[cfg(test)]
    pub(crate) fn generation(&self) -> u64 {
        self.current
    }

    /// Whether a timer message of `generation` is the armed timer's; if so the timer is spent.
    pub(crate) fn fire(&mut self, generation: u64) -> bool {
        if generation == self.current && self.armed_for.is_some() {
            self.armed_for = None;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stale_generation_is_ignored() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let later = t + Duration::from_secs(60);
        let mut g = ExpiryGeneration::default();
        assert!(!g.needs_rearm(None));
        assert!(g.needs_rearm(Some(later)));
        let first = g.arm(later);
        assert!(!g.needs_rearm(Some(later)));
        assert!(
            !g.needs_rearm(Some(later + Duration::from_secs(1))),
            "later keeps the timer"
        );
        assert!(g.needs_rearm(Some(t)), "earlier re-arms");
        let second = g.arm(t);
        assert!(!g.fire(first), "the replaced timer's message is stale");
        assert!(g.fire(second));
        assert!(!g.fire(second), "a timer fires once");
        assert!(g.needs_rearm(Some(later)));
    }

    fn binding(contact: &str, expires_at: SystemTime, flow: bool) -> Binding {
        use sipmesh_protocol::peer::{ConnectionId, Transport};
        use sipmesh_protocol::registrar::Source;
        Binding {
            contact: bytes::Bytes::copy_from_slice(contact.as_bytes()),
            q: 1000,
            expires_at,
            call_id: bytes::Bytes::from_static(b"c"),
            cseq: 1,
            path: Vec::new(),
            instance: flow.then(|| bytes::Bytes::from_static(b"\"<urn:uuid:1>\"")),
            reg_id: flow.then_some(1),
            source: Source {
                remote: ([192, 0, 2, 1], 40000).into(),
                transport: Transport::Tcp,
                local: ([198, 51, 100, 1], 5060).into(),
                connection: Some(ConnectionId(7)),
            },
        }
    }

    #[test]
    fn serves_live_bindings_but_never_flows_or_nothing() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let live = binding("sip:a@192.0.2.1", now + Duration::from_secs(60), false);
        let gone = binding("sip:b@192.0.2.2", now - Duration::from_secs(1), false);
        let mut cache = BindingCache::unknown(true);
        cache.set(&[live.clone(), gone.clone()]);
        assert_eq!(cache.serve(now), Some(vec![live.clone()]));
        assert_eq!(cache.next_expiry(), Some(gone.expires_at));
        assert_eq!(cache.prune(now), 1);
        assert_eq!(cache.next_expiry(), Some(live.expires_at));
        // Only expired bindings: the store decides between 404 and 480.
        cache.set(std::slice::from_ref(&gone));
        assert_eq!(cache.serve(now), None);
        // A flow can vanish from the store when its connection closes: always ask the store.
        let flow = binding("sip:c@x.invalid", now + Duration::from_secs(60), true);
        assert!(flow.is_flow());
        cache.set(&[live.clone(), flow]);
        assert_eq!(cache.serve(now), None);
        // An unknown outcome forgets everything.
        cache.set(std::slice::from_ref(&live));
        cache.invalidate();
        assert_eq!(cache.serve(now), None);
        // Without kept bindings it never serves, but still knows the earliest expiry.
        let mut summary = BindingCache::unknown(false);
        summary.set(std::slice::from_ref(&live));
        assert_eq!(summary.serve(now), None);
        assert_eq!(
            (summary.len(), summary.next_expiry()),
            (1, Some(live.expires_at))
        );
    }

    #[test]
    fn unknown_cache_never_serves() {
        let cache = BindingCache::unknown(true);
        assert_eq!(cache.serve(SystemTime::now()), None);
        assert_eq!(cache.next_expiry(), None);
    }
}
