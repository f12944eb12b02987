//! The response context of a forked request: which responses go upstream, and when
//! (RFC 3261 §16.7).
//!
//! The context only sees status codes per branch; the proxy keeps the response messages. It
//! decides three things: forward a response now (provisionals except 100, every 2xx to an INVITE,
//! the first 2xx otherwise), keep it as a candidate for the best final response, or absorb it;
//! whether the remaining branches must be cancelled (after a 2xx or 6xx to an INVITE, §16.7 step
//! 10); and, once every branch is final, which one is the best (§16.7 step 6).

/// What the proxy does with one response received on one branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseAction {
    /// Send it upstream now (a provisional, or a 2xx).
    Forward,
    /// Send it upstream now, and it is the final response of the server transaction.
    ForwardFinal,
    /// Keep it: it may be chosen as the best response when every branch has ended.
    Keep,
    /// Drop it (100 Trying, anything after the final response was sent).
    Absorb,
}

/// Per-branch progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Branch {
    /// No response yet.
    Waiting,
    /// A provisional (1xx) response came: the branch may be cancelled now (§9.1).
    Proceeding,
    /// A final response (or a synthesised 408 on timeout) came.
    Final(u16),
}

/// The response context of one server transaction with one or more client branches.
#[derive(Debug, Clone)]
pub struct ResponseContext {
    is_invite: bool,
    branches: Vec<Branch>,
    final_forwarded: bool,
    cancel_requested: bool,
}

impl ResponseContext {
    /// A context for a request of the given kind with `branches` client transactions.
    pub fn new(is_invite: bool, branches: usize) -> Self {
        Self {
            is_invite,
            branches: vec![Branch::Waiting; branches],
            final_forwarded: false,
            cancel_requested: false,
        }
    }

    /// Records a response on `branch` and says what to do with it.
    pub fn on_response(&mut self, branch: usize, code: u16) -> ResponseAction {
        let Some(state) = self.branches.get_mut(branch) else {
            return ResponseAction::Absorb;
        };
        if code < 200 {
            if *state == Branch::Waiting {
                *state = Branch::Proceeding;
            }
            if code == 100 || self.final_forwarded {
                return ResponseAction::Absorb;
            }
            return ResponseAction::Forward;
        }
        let first_final_on_branch = !matches!(state, Branch::Final(_));
        if first_final_on_branch {
            *state = Branch::Final(code);
        }
        if (200..300).contains(&code) {
            // Every 2xx to an INVITE goes upstream (each is a separate dialog, §16.7 step 5);
            // for other methods only the first final response can.
            if self.is_invite {
                let first = !self.final_forwarded;
                self.final_forwarded = true;
                return if first {
                    ResponseAction::ForwardFinal
                } else {
                    ResponseAction::Forward
                };
            }
            if self.final_forwarded || !first_final_on_branch {
                return ResponseAction::Absorb;
            }
            self.final_forwarded = true;
            return ResponseAction::ForwardFinal;
        }
        if self.final_forwarded || !first_final_on_branch {
            return ResponseAction::Absorb;
        }
        ResponseAction::Keep
    }

    /// Records that `branch` ended without a final response (Timer B/F, or a transport error);
    /// RFC 3261 §16.7 step 6 treats it as a 408.
    pub fn on_branch_failed(&mut self, branch: usize) {
        self.on_branch_failed_with(branch, 408);
    }

    /// A branch ended without a response for a known reason: it counts as a final `code`
    /// (480 when the flow to a UA closed under it, RFC 5626 §5.4).
    pub fn on_branch_failed_with(&mut self, branch: usize, code: u16) {
        if let Some(state) = self.branches.get_mut(branch)
            && !matches!(state, Branch::Final(_))
        {
            *state = Branch::Final(code);
        }
    }

    /// Marks the request as cancelled by the client (CANCEL received, §16.10).
    pub fn request_cancel(&mut self) {
        self.cancel_requested = true;
    }

    /// True when the pending branches must be cancelled: the client cancelled, or a 2xx/6xx
    /// ended an INVITE (§16.7 step 10).
    pub fn should_cancel_pending(&self) -> bool {
        if !self.is_invite {
            return false;
        }
        self.cancel_requested
            || self.final_forwarded
            || self
                .branches
                .iter()
                .any(|b| matches!(b, Branch::Final(c) if *c >= 600))
    }

    /// Branches that have not ended; those in `Proceeding` can be cancelled now, the others once
    /// they send a provisional response.
    pub fn pending_branches(&self) -> impl Iterator<Item = (usize, bool)> + '_ {
        self.branches
            .iter()
            .enumerate()
            .filter_map(|(i, b)| match b {
                Branch::Waiting => Some((i, false)),
                Branch::Proceeding => Some((i, true)),
                Branch::Final(_) => None,
            })
    }

    /// True when a final response has gone upstream.
    pub fn final_forwarded(&self) -> bool {
        self.final_forwarded
    }

    /// True when every branch has a final response.
    pub fn all_final(&self) -> bool {
        self.branches.iter().all(|b| matches!(b, Branch::Final(_)))
    }

    /// When every branch is final and nothing final went upstream yet: the branch whose response
    /// is the best (`None` when a synthesised 408 wins, that is when the best branch timed out),
    /// and the status code to send. RFC 3261 §16.7 step 6: any 6xx first; else the lowest class;
    /// within a class, responses that let the client retry (401, 407, 415, 420, 484) first. A 503
    /// is sent as 500 (the client must not think the proxy itself is overloaded).
    pub fn best(&self) -> Option<(usize, u16)> {
        if self.final_forwarded || !self.all_final() {
            return None;
        }
        let codes = self
            .branches
            .iter()
            .enumerate()
            .filter_map(|(i, b)| match b {
                Branch::Final(c) => Some((i, *c)),
                _ => None,
            });
        let rank = |code: u16| -> (u16, u16) {
            let class = if code >= 600 { 0 } else { code / 100 };
            let preferred = matches!(code, 401 | 407 | 415 | 420 | 484);
            (class, u16::from(!preferred))
        };
        codes
            .min_by_key(|&(i, c)| (rank(c), i))
            .map(|(i, c)| (i, if c == 503 { 500 } else { c }))
    }

    /// Marks the best response as sent.
    pub fn mark_final_forwarded(&mut self) {
        self.final_forwarded = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provisionals_are_forwarded_but_not_100() {
        let mut ctx = ResponseContext::new(true, 2);
        assert_eq!(ctx.on_response(0, 100), ResponseAction::Absorb);
        assert_eq!(ctx.on_response(0, 180), ResponseAction::Forward);
        assert_eq!(
            ctx.pending_branches().collect::<Vec<_>>(),
            vec![(0, true), (1, false)]
        );
    }

    #[test]
    fn first_2xx_of_invite_is_final_and_cancels_the_rest() {
        let mut ctx = ResponseContext::new(true, 2);
        ctx.on_response(1, 180);
        assert!(!ctx.should_cancel_pending());
        assert_eq!(ctx.on_response(0, 200), ResponseAction::ForwardFinal);
        assert!(ctx.should_cancel_pending());
        assert_eq!(ctx.pending_branches().collect::<Vec<_>>(), vec![(1, true)]);
        // A second 2xx from another branch still goes upstream (another dialog).
        assert_eq!(ctx.on_response(1, 200), ResponseAction::Forward);
        // The cancelled branch's 487 is absorbed.
        let mut ctx = ResponseContext::new(true, 2);
        ctx.on_response(0, 200);
        assert_eq!(ctx.on_response(1, 487), ResponseAction::Absorb);
        assert_eq!(ctx.best(), None);
    }

    #[test]
    fn best_response_prefers_6xx_then_lowest_class_then_retryable() {
        let mut ctx = ResponseContext::new(true, 3);
        assert_eq!(ctx.on_response(0, 486), ResponseAction::Keep);
        assert_eq!(ctx.best(), None, "not all branches are final");
        ctx.on_response(1, 302);
        ctx.on_response(2, 500);
        assert_eq!(ctx.best(), Some((1, 302)));

        let mut ctx = ResponseContext::new(true, 3);
        ctx.on_response(0, 404);
        ctx.on_response(1, 407);
        ctx.on_response(2, 603);
        assert_eq!(ctx.best(), Some((2, 603)));
        assert!(ctx.should_cancel_pending());

        let mut ctx = ResponseContext::new(true, 2);
        ctx.on_response(0, 404);
        ctx.on_response(1, 407);
        assert_eq!(ctx.best(), Some((1, 407)));
    }

    #[test]
    fn timeouts_count_as_408_and_503_becomes_500() {
        let mut ctx = ResponseContext::new(false, 2);
        ctx.on_branch_failed(0);
        ctx.on_response(1, 503);
        assert_eq!(ctx.best(), Some((0, 408)));
        let mut ctx = ResponseContext::new(false, 1);
        ctx.on_response(0, 503);
        assert_eq!(ctx.best(), Some((0, 500)));
    }

    #[test]
    fn non_invite_forwards_only_the_first_final() {
        let mut ctx = ResponseContext::new(false, 2);
        assert_eq!(ctx.on_response(0, 200), ResponseAction::ForwardFinal);
        assert_eq!(ctx.on_response(1, 200), ResponseAction::Absorb);
        assert!(!ctx.should_cancel_pending());
    }

    #[test]
    fn client_cancel_requests_cancellation_of_pending_branches() {
        let mut ctx = ResponseContext::new(true, 2);
        ctx.on_response(0, 180);
        ctx.request_cancel();
        assert!(ctx.should_cancel_pending());
        assert_eq!(ctx.on_response(0, 487), ResponseAction::Keep);
        ctx.on_response(1, 487);
        assert_eq!(ctx.best(), Some((0, 487)));
    }
}
