//! A sliding window of recently accepted nonces (as in IPsec and WireGuard): a message
//! may arrive late or twice below the link, but is accepted at most once.

/// A link's window, in 64-bit words: nonces further behind the newest accepted one than
/// 1024 are refused. A reordering proxy or a burst of retransmissions moves frames by a
/// handful of positions, not a thousand.
pub const LINK_WORDS: usize = 16;

/// Accepted nonces within `WORDS × 64` of the newest.
#[derive(Debug, Clone)]
pub struct ReplayWindow<const WORDS: usize = LINK_WORDS> {
    /// Newest accepted nonce + 1 (0 = nothing accepted yet).
    top: u64,
    /// Bit `n % WINDOW` set = nonce `n` accepted, for `n` in `[top - WINDOW, top)`.
    bits: [u64; WORDS],
}

impl<const WORDS: usize> Default for ReplayWindow<WORDS> {
    fn default() -> Self {
        ReplayWindow {
            top: 0,
            bits: [0; WORDS],
        }
    }
}

impl<const WORDS: usize> ReplayWindow<WORDS> {
    const WINDOW: u64 = WORDS as u64 * 64;

    fn bit(nonce: u64) -> (usize, u64) {
        let i = nonce % Self::WINDOW;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    /// Whether `nonce` is new and inside the window (checked before decrypting).
    pub fn may_accept(&self, nonce: u64) -> bool {
        if nonce >= self.top {
            return true;
        }
        if self.top - nonce > Self::WINDOW {
            return false;
        }
        let (w, b) = Self::bit(nonce);
        self.bits[w] & b == 0
    }

    /// Whether `nonce` lies further behind the newest accepted one than the window
    /// reaches (as opposed to inside it and already seen).
    pub fn is_behind(&self, nonce: u64) -> bool {
        nonce < self.top && self.top - nonce > Self::WINDOW
    }

    /// Records an authenticated nonce (call only after `may_accept` and a good tag).
    pub fn accept(&mut self, nonce: u64) {
        if nonce >= self.top {
            let advance = nonce - self.top + 1;
            if advance >= Self::WINDOW {
                self.bits = [0; WORDS];
            } else {
                for n in self.top..=nonce {
                    let (w, b) = Self::bit(n);
                    self.bits[w] &= !b;
                }
            }
            self.top = nonce + 1;
        }
        let (w, b) = Self::bit(nonce);
        self.bits[w] |= b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn in_order_late_repeated_and_too_old() {
        let mut w: ReplayWindow = ReplayWindow::default();
        for n in [0, 1, 2, 5, 4] {
            assert!(w.may_accept(n));
            w.accept(n);
        }
        assert!(!w.may_accept(4));
        assert!(!w.may_accept(0));
        assert!(w.may_accept(3));
        w.accept(3000);
        assert!(!w.may_accept(3));
        assert!(w.may_accept(2999));
        assert!(!w.may_accept(3000 - ReplayWindow::<LINK_WORDS>::WINDOW - 1));
    }

    proptest! {
        #[test]
        fn each_nonce_is_accepted_at_most_once(nonces in proptest::collection::vec(0u64..3000, 0..400)) {
            let mut w: ReplayWindow = ReplayWindow::default();
            let mut seen = std::collections::HashSet::new();
            for n in nonces {
                if w.may_accept(n) {
                    prop_assert!(seen.insert(n), "nonce {} accepted twice", n);
                    w.accept(n);
                }
            }
        }

        #[test]
        fn a_one_word_window_accepts_each_nonce_at_most_once(nonces in proptest::collection::vec(0u64..300, 0..400)) {
            let mut w: ReplayWindow<1> = ReplayWindow::default();
            let mut seen = std::collections::HashSet::new();
            for n in nonces {
                if w.may_accept(n) {
                    prop_assert!(seen.insert(n), "nonce {} accepted twice", n);
                    w.accept(n);
                }
            }
        }
    }
}
