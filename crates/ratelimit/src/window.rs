//! One counter: a ring of per-second slots covering the last minute.
//!
//! Per-second slots rather than a two-window weighted estimate: the
//! weighted estimate assumes the previous minute's traffic was spread
//! evenly, which is wrong exactly when it matters (a burst at the end of
//! the previous minute is under-counted by up to the whole burst). With
//! 60 one-second slots a count stays in the window between 59 and 60
//! seconds, so in any 60 s span at most the limit plus one second's worth
//! of traffic (1/60, 1.7 % at a steady rate) gets through. Slots are keyed
//! by Unix second so that every router of a deployment buckets the same
//! moment alike, which is what lets them exchange counts per second.

/// Seconds in the window, and slots in the ring.
pub(crate) const WINDOW_SECS: u32 = 60;

#[derive(Clone, Copy, Default)]
struct Slot {
    /// The Unix second this slot holds; an older value means the slot is
    /// stale and reads as empty.
    sec: u32,
    /// Requests and tokens counted in that second, local and remote.
    req: u32,
    tok: u32,
    /// The local part not yet published to the other routers.
    req_pending: u32,
    tok_pending: u32,
}

/// Which of the two quantities a question is about.
#[derive(Clone, Copy)]
pub(crate) enum Quantity {
    Requests,
    Tokens,
}

impl Slot {
    fn get(&self, q: Quantity) -> u64 {
        u64::from(match q {
            Quantity::Requests => self.req,
            Quantity::Tokens => self.tok,
        })
    }
}

/// What a counter holds in the window ending at a given second.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct Usage {
    pub req: u64,
    pub tok: u64,
    /// The part of `req` and `tok` counted here and not yet published.
    pub req_pending: u64,
    pub tok_pending: u64,
    /// The oldest seconds with requests and with tokens counted.
    pub oldest_req: Option<u32>,
    pub oldest_tok: Option<u32>,
}

impl Usage {
    pub(crate) fn get(&self, q: Quantity) -> u64 {
        match q {
            Quantity::Requests => self.req,
            Quantity::Tokens => self.tok,
        }
    }

    /// The Unix second at whose start the oldest count of `q` leaves the
    /// window, if anything is counted.
    pub(crate) fn oldest_frees_at(&self, q: Quantity) -> Option<u32> {
        match q {
            Quantity::Requests => self.oldest_req,
            Quantity::Tokens => self.oldest_tok,
        }
        .map(|sec| sec + WINDOW_SECS)
    }

    /// Accounts for one request just counted in second `sec`.
    pub(crate) fn add_request(&mut self, sec: u32) {
        self.req += 1;
        self.req_pending += 1;
        self.oldest_req = Some(self.oldest_req.map_or(sec, |s| s.min(sec)));
    }

    pub(crate) fn pending(&self, q: Quantity) -> u64 {
        match q {
            Quantity::Requests => self.req_pending,
            Quantity::Tokens => self.tok_pending,
        }
    }
}

/// A count not yet published: one (second, requests, tokens) of a counter.
pub(crate) struct PendingCount {
    pub sec: u32,
    pub req: u32,
    pub tok: u32,
}

pub(crate) struct Counter {
    slots: Box<[Slot; WINDOW_SECS as usize]>,
    /// The last second anything (local or remote) was counted here, or it
    /// was consulted for an admission: idle counters are evicted on it.
    pub last_hit: u32,
    /// Some slot has an unpublished local count.
    dirty: bool,
    /// The last second another router's counts for this counter arrived
    /// (0: never): only then must this router share the room left.
    pub remote_hit: u32,
}

impl Counter {
    pub(crate) fn new(now_sec: u32) -> Self {
        Counter {
            slots: Box::new([Slot::default(); WINDOW_SECS as usize]),
            last_hit: now_sec,
            dirty: false,
            remote_hit: 0,
        }
    }

    /// The slot for `sec`, cleared first if it still holds an older
    /// second; `None` when it already holds a newer one (`sec` has left
    /// the window).
    fn slot_mut(&mut self, sec: u32) -> Option<&mut Slot> {
        let slot = &mut self.slots[(sec % WINDOW_SECS) as usize];
        if slot.sec < sec {
            *slot = Slot {
                sec,
                ..Slot::default()
            };
        }
        (slot.sec == sec).then_some(slot)
    }

    fn in_window(slot_sec: u32, now_sec: u32) -> bool {
        slot_sec <= now_sec && slot_sec + WINDOW_SECS > now_sec
    }

    pub(crate) fn usage(&self, now_sec: u32) -> Usage {
        let mut u = Usage::default();
        for s in self.slots.iter() {
            if Self::in_window(s.sec, now_sec) {
                u.req += u64::from(s.req);
                u.tok += u64::from(s.tok);
                u.req_pending += u64::from(s.req_pending);
                u.tok_pending += u64::from(s.tok_pending);
                if s.req > 0 && u.oldest_req.is_none_or(|o| s.sec < o) {
                    u.oldest_req = Some(s.sec);
                }
                if s.tok > 0 && u.oldest_tok.is_none_or(|o| s.sec < o) {
                    u.oldest_tok = Some(s.sec);
                }
            }
        }
        u
    }

    pub(crate) fn add_local(&mut self, sec: u32, req: u32, tok: u32) {
        if let Some(slot) = self.slot_mut(sec) {
            slot.req = slot.req.saturating_add(req);
            slot.tok = slot.tok.saturating_add(tok);
            slot.req_pending = slot.req_pending.saturating_add(req);
            slot.tok_pending = slot.tok_pending.saturating_add(tok);
            self.dirty = true;
        }
    }

    /// Takes back one request counted by [`Counter::add_local`] in the same
    /// second (an admission refused by a later rule).
    pub(crate) fn remove_local_request(&mut self, sec: u32) {
        let slot = &mut self.slots[(sec % WINDOW_SECS) as usize];
        if slot.sec == sec {
            slot.req = slot.req.saturating_sub(1);
            slot.req_pending = slot.req_pending.saturating_sub(1);
        }
    }

    /// Counts another router's requests and tokens (never re-published).
    pub(crate) fn add_remote(&mut self, sec: u32, req: u32, tok: u32) {
        if let Some(slot) = self.slot_mut(sec) {
            slot.req = slot.req.saturating_add(req);
            slot.tok = slot.tok.saturating_add(tok);
        }
    }

    /// The Unix second at whose start the window's count of `q` first
    /// drops below `limit`: the end of the window for the oldest slots
    /// whose expiry frees enough. `None` if nothing needs freeing.
    pub(crate) fn frees_at(&self, now_sec: u32, q: Quantity, limit: u64) -> Option<u32> {
        let used = self.usage(now_sec).get(q);
        if used < limit {
            return None;
        }
        let mut freed = 0;
        for sec in now_sec.saturating_sub(WINDOW_SECS - 1)..=now_sec {
            let slot = &self.slots[(sec % WINDOW_SECS) as usize];
            if slot.sec == sec {
                freed += slot.get(q);
                if freed > 0 && used - freed < limit {
                    return Some(sec + WINDOW_SECS);
                }
            }
        }
        // Only reached with a zero limit: nothing ever fits, so name the
        // end of the current window.
        Some(now_sec + WINDOW_SECS)
    }

    /// Moves the unpublished local counts out (in ring order: receivers
    /// place each count by its second, so order does not matter).
    pub(crate) fn take_pending(&mut self, out: &mut impl FnMut(PendingCount)) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        for s in self.slots.iter_mut() {
            if s.req_pending > 0 || s.tok_pending > 0 {
                out(PendingCount {
                    sec: s.sec,
                    req: s.req_pending,
                    tok: s.tok_pending,
                });
                s.req_pending = 0;
                s.tok_pending = 0;
            }
        }
    }
}
