//! What a peer leaves unread of what the page sends it. A browser WebSocket queues whatever is
//! sent on it, without bound, until the other side reads it (`bufferedAmount` says how much
//! waits), and tells nothing when the queue drains. [`SendBuffer`] looks at the queue whenever
//! the connection wakes and says whether to go on serving the peer blocks, to hold them back
//! until it reads, or to drop it: one that reads nothing for [`STALL_TIMEOUT`], or lets more
//! wait than an honest peer ever can.

use std::time::Duration;

/// How long bytes may wait in a peer's socket with none of them leaving before the peer is
/// dropped as one that does not read (as the native peer does).
pub const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a connection whose blocks are held back looks whether its peer read enough to
/// serve it again (it also looks whenever something arrives from the peer).
pub const HOLD_CHECK_INTERVAL: Duration = Duration::from_millis(10);

/// How often a connection with bytes waiting looks whether they leave, for [`STALL_TIMEOUT`].
pub const STALL_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Room for messages other than blocks (rejects, haves, the bitfield) on top of the blocks a
/// peer may have waiting, before it is dropped.
pub const CONTROL_BYTES: u64 = 1 << 20;

/// What to do with a peer, from what waits in its socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flow {
    /// Serve it: read the blocks it asks for and send them.
    Serve,
    /// Read no more blocks for it until it reads what waits.
    Hold,
    /// Close the connection, for this reason.
    Drop(String),
}

/// One connection's view of its socket's send queue. See the module documentation.
#[derive(Debug, Clone)]
pub struct SendBuffer {
    hold_above: u64,
    drop_above: u64,
    /// Bytes that had left the socket when last looked at.
    drained: u64,
    /// Since when bytes have waited with none leaving, if any wait.
    waiting_since: Option<Duration>,
    holding: bool,
}

impl SendBuffer {
    /// Holds blocks back while more than `hold_above` bytes wait: the most an honest peer has
    /// waiting is the blocks it may have requested at once, so one that reads what it asks for
    /// is never held back. Blocks already being read when the hold starts are sent all the
    /// same, so as many again may wait; beyond that and [`CONTROL_BYTES`], the peer is dropped.
    pub fn new(hold_above: u64) -> Self {
        Self {
            hold_above,
            drop_above: 2 * hold_above + CONTROL_BYTES,
            drained: 0,
            waiting_since: None,
            holding: false,
        }
    }

    /// Looks at the socket at `now`: `sent` bytes were handed to it in all, of which
    /// `buffered` (its `bufferedAmount`) have not left yet.
    pub fn observe(&mut self, sent: u64, buffered: u64, now: Duration) -> Flow {
        let drained = sent.saturating_sub(buffered);
        if buffered == 0 {
            self.waiting_since = None;
        } else if drained > self.drained || self.waiting_since.is_none() {
            self.waiting_since = Some(now);
        }
        self.drained = drained;
        if buffered > self.drop_above {
            return Flow::Drop(format!(
                "the peer left {buffered} bytes unread, more than the {} a peer may",
                self.drop_above
            ));
        }
        if self
            .waiting_since
            .is_some_and(|since| now.saturating_sub(since) >= STALL_TIMEOUT)
        {
            return Flow::Drop(format!(
                "the peer has not read what was sent to it for {} s",
                STALL_TIMEOUT.as_secs()
            ));
        }
        self.holding = buffered > self.hold_above;
        if self.holding {
            Flow::Hold
        } else {
            Flow::Serve
        }
    }

    /// How soon to look again though nothing else happens: soon while blocks are held back, so
    /// serving resumes once the peer reads; now and then while bytes wait, to notice a stall;
    /// never while nothing waits.
    pub fn next_check(&self) -> Option<Duration> {
        if self.holding {
            Some(HOLD_CHECK_INTERVAL)
        } else if self.waiting_since.is_some() {
            Some(STALL_CHECK_INTERVAL)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    fn at(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn a_peer_that_reads_is_served_and_never_timed() {
        let mut buffer = SendBuffer::new(4 * MB);
        assert_eq!(buffer.observe(0, 0, at(0)), Flow::Serve);
        assert_eq!(buffer.next_check(), None);
        assert_eq!(buffer.observe(4 * MB, 4 * MB, at(1)), Flow::Serve);
        assert_eq!(buffer.next_check(), Some(STALL_CHECK_INTERVAL));
        // A slow reader: a little leaves every 20 s, so it is never dropped.
        let mut sent = 4 * MB;
        for step in 1..10 {
            sent += MB;
            let flow = buffer.observe(sent, 4 * MB, at(step * 20_000));
            assert_eq!(flow, Flow::Serve, "step {step}");
        }
        assert_eq!(buffer.observe(sent, 0, at(500_000)), Flow::Serve);
        assert_eq!(buffer.next_check(), None);
    }

    #[test]
    fn blocks_are_held_back_while_more_than_the_limit_waits_and_served_once_it_drains() {
        let mut buffer = SendBuffer::new(4 * MB);
        assert_eq!(buffer.observe(5 * MB, 5 * MB, at(0)), Flow::Hold);
        assert_eq!(buffer.next_check(), Some(HOLD_CHECK_INTERVAL));
        assert_eq!(buffer.observe(5 * MB, 4 * MB + 1, at(10)), Flow::Hold);
        assert_eq!(buffer.observe(5 * MB, 4 * MB, at(20)), Flow::Serve);
        assert_eq!(buffer.next_check(), Some(STALL_CHECK_INTERVAL));
    }

    #[test]
    fn a_peer_that_reads_nothing_is_dropped_after_the_stall_timeout() {
        let mut buffer = SendBuffer::new(4 * MB);
        assert_eq!(buffer.observe(MB, MB, at(0)), Flow::Serve);
        // More is sent, but nothing leaves: no progress.
        assert_eq!(buffer.observe(2 * MB, 2 * MB, at(29_999)), Flow::Serve);
        assert!(matches!(
            buffer.observe(2 * MB, 2 * MB, at(30_000)),
            Flow::Drop(_)
        ));
    }

    #[test]
    fn the_stall_timer_starts_when_bytes_start_waiting_not_when_the_peer_last_read() {
        let mut buffer = SendBuffer::new(4 * MB);
        assert_eq!(buffer.observe(MB, 0, at(0)), Flow::Serve);
        // A minute idle, then something is sent: it has just started waiting.
        assert_eq!(buffer.observe(MB + 10, 10, at(60_000)), Flow::Serve);
        assert_eq!(buffer.observe(MB + 10, 10, at(89_999)), Flow::Serve);
        assert!(matches!(
            buffer.observe(MB + 10, 10, at(90_000)),
            Flow::Drop(_)
        ));
    }

    #[test]
    fn a_peer_that_leaves_more_unread_than_an_honest_one_can_is_dropped_at_once() {
        let mut buffer = SendBuffer::new(4 * MB);
        let most = 8 * MB + CONTROL_BYTES;
        assert_eq!(buffer.observe(most, most, at(0)), Flow::Hold);
        assert!(matches!(
            buffer.observe(most + 1, most + 1, at(1)),
            Flow::Drop(_)
        ));
    }
}
