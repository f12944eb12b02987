//! Append-only storage for the responses that completed transactions keep for Timer J.
//!
//! Completed non-INVITE transactions all live the same 64*T1, so they expire in the order they
//! were created. Copying their responses into large shared segments (instead of keeping one
//! heap buffer per response) makes that memory come and go a segment at a time: a burst of
//! 100,000 REGISTERs leaves no holes between the long-lived bindings allocated at the same
//! moment, and the allocator can hand whole segments back to the OS once they expire.

use bytes::{Bytes, BytesMut};

/// Size of one segment. Responses larger than this get a segment of their own.
const SEGMENT: usize = 256 * 1024;

/// Appends byte strings to shared segments and returns cheap slices of them.
#[derive(Debug, Default)]
pub(super) struct SegmentArena {
    current: BytesMut,
}

impl SegmentArena {
    /// Copies `data` into the current segment (starting a new one when it is full) and returns
    /// a slice that keeps only that segment alive.
    pub(super) fn store(&mut self, data: &[u8]) -> Bytes {
        if self.current.capacity() - self.current.len() < data.len() {
            self.current = BytesMut::with_capacity(SEGMENT.max(data.len()));
        }
        self.current.extend_from_slice(data);
        self.current.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_hold_their_bytes_across_segments() {
        let mut arena = SegmentArena::default();
        let a = arena.store(b"first");
        let big = vec![7u8; SEGMENT + 10];
        let b = arena.store(&big);
        let c = arena.store(b"third");
        assert_eq!(&a[..], b"first");
        assert_eq!(b.len(), SEGMENT + 10);
        assert_eq!(&c[..], b"third");
    }
}
