//! A connection's queue of outgoing text, bounded in bytes rather than in messages: a peer that
//! does not read holds at most the budget (or one message, when a single one is larger), however
//! large the messages it asks for. Text is shared (`Arc<str>`), so the same `.mtorrent` sent to
//! many connections is in memory once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};

/// Text for the socket, shared between the queues it is in.
pub type Text = Arc<str>;

/// The sending side; cheap to clone.
#[derive(Debug, Clone)]
pub struct Outbox {
    sender: mpsc::UnboundedSender<Text>,
    budget: Arc<Budget>,
}

/// The writer's side.
#[derive(Debug)]
pub struct OutboxReceiver {
    receiver: mpsc::UnboundedReceiver<Text>,
    budget: Arc<Budget>,
}

#[derive(Debug)]
struct Budget {
    queued: AtomicUsize,
    limit: usize,
    space: Notify,
    closed: AtomicBool,
}

/// Why text was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotQueued {
    /// The queue holds its budget: the peer is not reading.
    Full,
    /// The writer is gone.
    Closed,
}

impl Outbox {
    /// A queue that holds at most `limit` bytes, or one message of any size.
    pub fn new(limit: usize) -> (Outbox, OutboxReceiver) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let budget = Arc::new(Budget {
            queued: AtomicUsize::new(0),
            limit,
            space: Notify::new(),
            closed: AtomicBool::new(false),
        });
        (
            Outbox {
                sender,
                budget: budget.clone(),
            },
            OutboxReceiver { receiver, budget },
        )
    }

    /// Queues `text` if the budget allows it now.
    pub fn try_send(&self, text: Text) -> Result<(), NotQueued> {
        if self.budget.closed.load(Ordering::Acquire) || self.sender.is_closed() {
            return Err(NotQueued::Closed);
        }
        let len = text.len();
        self.budget
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued == 0 || queued + len <= self.budget.limit).then_some(queued + len)
            })
            .map_err(|_| NotQueued::Full)?;
        self.sender.send(text).map_err(|_| {
            self.budget.queued.fetch_sub(len, Ordering::AcqRel);
            NotQueued::Closed
        })
    }

    /// Queues `text`, waiting for the writer to make room; callers bound the wait, since a
    /// peer that never reads never makes any.
    pub async fn send(&self, text: Text) -> Result<(), NotQueued> {
        loop {
            let space = self.budget.space.notified();
            match self.try_send(text.clone()) {
                Err(NotQueued::Full) => space.await,
                done => return done,
            }
        }
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.budget.queued.load(Ordering::Acquire)
    }
}

impl OutboxReceiver {
    /// The next text to write; `None` once every sender is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<Text> {
        self.receiver.recv().await
    }

    /// Gives back the budget of `text`, once it is written (or dropped).
    pub fn written(&self, text: &Text) {
        self.budget.queued.fetch_sub(text.len(), Ordering::AcqRel);
        self.budget.space.notify_waiters();
    }
}

impl Drop for OutboxReceiver {
    fn drop(&mut self) {
        self.budget.closed.store(true, Ordering::Release);
        self.budget.space.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn text(len: usize) -> Text {
        "x".repeat(len).into()
    }

    #[test]
    fn the_budget_is_in_bytes_and_one_large_message_still_fits_alone() {
        let (outbox, mut receiver) = Outbox::new(100);
        outbox.try_send(text(60)).unwrap();
        assert_eq!(outbox.try_send(text(60)), Err(NotQueued::Full));
        outbox.try_send(text(40)).unwrap();
        assert_eq!(outbox.queued(), 100);
        let first = receiver.receiver.try_recv().unwrap();
        receiver.written(&first);
        let second = receiver.receiver.try_recv().unwrap();
        receiver.written(&second);
        assert_eq!(outbox.queued(), 0);
        // Alone, a message larger than the budget is queued; nothing else then is.
        outbox.try_send(text(1000)).unwrap();
        assert_eq!(outbox.try_send(text(1)), Err(NotQueued::Full));
    }

    #[tokio::test]
    async fn send_waits_for_room_and_fails_once_the_writer_is_gone() {
        let (outbox, mut receiver) = Outbox::new(10);
        outbox.try_send(text(10)).unwrap();
        let waiting = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.send(text(5)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "no room yet");
        let written = receiver.recv().await.unwrap();
        receiver.written(&written);
        waiting.await.unwrap().unwrap();
        assert_eq!(outbox.queued(), 5);

        let blocked = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.send(text(10)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(receiver);
        assert_eq!(blocked.await.unwrap(), Err(NotQueued::Closed));
        assert_eq!(outbox.try_send(text(1)), Err(NotQueued::Closed));
    }
}
