//! Process memory settings: transparent huge pages off for the node (issue 6, the p99 tail).
//!
//! mimalloc advises its arenas `MADV_HUGEPAGE`, so with the kernel's THP setting at `madvise`
//! (Debian's default) the first touch of each 2 MiB of new heap is a huge-page fault: the kernel
//! zeroes 2 MiB in one go and, when free memory is fragmented, first compacts memory
//! synchronously (`defrag = madvise`). Measured on the signalling thread of a node relaying
//! calls with media (docs/PERFORMANCE.md, "Session 6: where the p99 tail comes from"): 14-20
//! such faults per 1,000 calls, each stalling the thread 2-5 ms, against at most 0.35 ms
//! between two system calls otherwise; with THP off the same heap growth is ~5,000 4 KiB faults
//! whose longest burst stalls 1.5 ms. The node's per-call state is small and short-lived, so it
//! gains nothing from huge pages that would pay for those stalls.
//!
//! `PR_SET_THP_DISABLE` (prctl(2), Linux 3.15) is a property of the process's address space,
//! checked at fault time: it covers the arenas mimalloc reserved before `main` ran.

use std::io;

/// Whether a node leaves transparent huge pages on unless configured otherwise.
pub const DEFAULT_TRANSPARENT_HUGE_PAGES: bool = false;

/// Turns transparent huge pages off (`enabled == false`) or back on for this process.
/// A no-op returning `Ok` on systems other than Linux.
pub fn set_transparent_huge_pages(enabled: bool) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let disable = libc::c_ulong::from(!enabled);
        // prctl(2) with integer arguments only (no pointer), so it cannot touch this process's
        // memory; its result is checked.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, disable, 0, 0, 0) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = enabled;
    Ok(())
}

/// Whether transparent huge pages are off for this process (None where it cannot be read).
pub fn transparent_huge_pages_disabled() -> Option<bool> {
    #[cfg(target_os = "linux")]
    {
        // No argument, no pointer: only reads the flag.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        (rc >= 0).then_some(rc == 1)
    }
    #[cfg(not(target_os = "linux"))]
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transparent_huge_pages_can_be_turned_off_and_on() {
        // The flag is per process: restore what the test harness had.
        let before = transparent_huge_pages_disabled();
        set_transparent_huge_pages(false).expect("prctl");
        assert_eq!(transparent_huge_pages_disabled(), Some(true));
        set_transparent_huge_pages(true).expect("prctl");
        assert_eq!(transparent_huge_pages_disabled(), Some(false));
        if before == Some(true) {
            set_transparent_huge_pages(false).expect("prctl");
        }
    }
}
