//! The peer's side of the tracker protocol, sans-IO: which tracker to talk to, when to
//! announce each swarm, and what to do when a tracker fails.
//!
//! An [`Announcer`] keeps one connection to one tracker at a time for every swarm the peer is
//! in: a node in ten thousand swarms still holds one tracker connection. It connects to the
//! tracker it prefers (tracker 1 at first) and, if that one has not answered within
//! [`AnnouncerConfig::hedge_after`], to the other one as well, keeping whichever answers first:
//! a tracker that is unreachable (its packets dropped, not refused) costs a new peer a fraction
//! of a second, not a timeout. Announces are paced
//! ([`AnnouncerConfig::announce_rate`]), so joining many swarms at once, or their periodic
//! re-announces, never floods the tracker: the rest wait their turn in deadline order. It starts with tracker 1; when the connection fails or a reply does not come within
//! [`AnnouncerConfig::reply_timeout`], it switches to the other tracker at once and announces
//! every swarm there, so a download carries on without the user noticing. If both fail, it
//! keeps alternating with an exponential backoff, and starts from scratch on the next success.
//!
//! # Driving it
//!
//! The driver performs each [`Action`] from [`poll_action`](Announcer::poll_action) (connect to
//! a URL, send a message, close), reports what happened with `handle_*`, keeps a timer at
//! [`poll_timeout`](Announcer::poll_timeout) and calls [`handle_timeout`](Announcer::handle_timeout)
//! when it fires, and acts on each [`AnnouncerEvent`] (new peers, a signal to dial a peer).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use crate::tracker::{
    Announce, AnnounceEvent, ErrorCode, FromTracker, PeerAddress, PeerInfo, ToTracker,
};
use crate::{InfoHash, PeerId};

/// Timing of an [`Announcer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnouncerConfig {
    /// How long to wait for a connection or a reply before giving up on a tracker.
    pub reply_timeout: Duration,
    /// How long the preferred tracker may take to accept a connection before the other one is
    /// tried too.
    pub hedge_after: Duration,
    /// The first wait after both trackers failed; it doubles up to `max_backoff`.
    pub first_backoff: Duration,
    /// The longest wait between attempts.
    pub max_backoff: Duration,
    /// How many peers to ask for.
    pub numwant: u32,
    /// Most announces sent per second, on average; as many may go at once. Stops and signals
    /// are never held back, but count against it.
    pub announce_rate: u32,
}

impl Default for AnnouncerConfig {
    fn default() -> Self {
        Self {
            reply_timeout: Duration::from_secs(10),
            hedge_after: Duration::from_millis(300),
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            numwant: 50,
            announce_rate: 500,
        }
    }
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a WebSocket to `urls[0]`; if it is not open after `hedge_after`, open one to
    /// `urls[1]` as well, and keep whichever opens first (closing the other). Then call
    /// [`Announcer::handle_connected`] with the index in `urls` of the one kept, or
    /// [`Announcer::handle_disconnected`] if neither opens.
    Connect {
        /// The preferred tracker, then the other.
        urls: [String; 2],
        /// When to try the other tracker too.
        hedge_after: Duration,
    },
    /// Send this message on the open connection.
    Send(ToTracker),
    /// Close the connection (without calling `handle_disconnected`).
    Disconnect,
}

/// What the tracker told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnnouncerEvent {
    /// Peers of a swarm.
    Peers {
        /// The swarm.
        info_hash: InfoHash,
        /// A sample of its peers.
        peers: Vec<PeerInfo>,
        /// Peers with the whole file.
        seeders: u32,
        /// Peers still downloading.
        leechers: u32,
    },
    /// A peer asks us (a browser peer) to dial it.
    Signal {
        /// The swarm.
        info_hash: InfoHash,
        /// The asking peer.
        from: PeerId,
        /// Where to dial.
        dial: String,
    },
    /// The tracker refused something.
    Refused {
        /// Why.
        code: ErrorCode,
        /// For people.
        message: String,
    },
    /// The announcer switched trackers.
    SwitchedTracker {
        /// The tracker now in use.
        url: String,
    },
}

#[derive(Debug, Clone)]
struct Swarm {
    address: PeerAddress,
    left: u64,
    metainfo: Option<String>,
    /// The event the next announce carries.
    pending: AnnounceEvent,
    next_announce: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Not connected; connect at this time.
    Down { retry_at: Duration },
    /// Connecting since this time.
    Connecting { since: Duration },
    /// Connected; waiting for a reply since this time, if we are.
    Up { awaiting_since: Option<Duration> },
}

/// The peer's tracker client state. See the module documentation.
#[derive(Debug)]
pub struct Announcer {
    trackers: [String; 2],
    current: usize,
    peer_id: PeerId,
    config: AnnouncerConfig,
    swarms: BTreeMap<InfoHash, Swarm>,
    /// Every swarm by the time of its next announce: the due ones are at the front.
    schedule: BTreeSet<(Duration, InfoHash)>,
    /// The pacing of announces (generic cell rate algorithm): the theoretical time of the
    /// next one; an announce may go while this is at most one second ahead of now.
    pace: Duration,
    link: Link,
    /// Trackers that failed in a row; the backoff grows with it.
    failures: u32,
    actions: VecDeque<Action>,
    events: VecDeque<AnnouncerEvent>,
}

impl Announcer {
    /// An announcer for `peer_id` that will start with `trackers[0]`.
    pub fn new(
        trackers: [String; 2],
        peer_id: PeerId,
        config: AnnouncerConfig,
        now: Duration,
    ) -> Self {
        Self {
            trackers,
            current: 0,
            peer_id,
            config,
            swarms: BTreeMap::new(),
            schedule: BTreeSet::new(),
            pace: now,
            link: Link::Down { retry_at: now },
            failures: 0,
            actions: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The tracker in use (or about to be).
    pub fn current_tracker(&self) -> &str {
        &self.trackers[self.current]
    }

    /// Whether a tracker connection is up.
    pub fn is_connected(&self) -> bool {
        matches!(self.link, Link::Up { .. })
    }

    /// Joins a swarm: announces `started` (with the `.mtorrent`, to register the file, if
    /// given) as soon as a tracker is connected.
    pub fn add_swarm(
        &mut self,
        info_hash: InfoHash,
        address: PeerAddress,
        left: u64,
        metainfo: Option<String>,
        now: Duration,
    ) {
        let swarm = Swarm {
            address,
            left,
            metainfo,
            pending: AnnounceEvent::Started,
            next_announce: now,
        };
        if let Some(old) = self.swarms.insert(info_hash, swarm) {
            self.schedule.remove(&(old.next_announce, info_hash));
        }
        self.schedule.insert((now, info_hash));
        self.announce_due(now);
    }

    /// How many swarms the announcer is in.
    pub fn swarm_count(&self) -> usize {
        self.swarms.len()
    }

    /// Whether the announcer is in this swarm.
    pub fn has_swarm(&self, info_hash: InfoHash) -> bool {
        self.swarms.contains_key(&info_hash)
    }

    /// Leaves a swarm, telling the tracker if connected.
    pub fn remove_swarm(&mut self, info_hash: InfoHash, now: Duration) {
        if let Some(mut swarm) = self.swarms.remove(&info_hash) {
            self.schedule.remove(&(swarm.next_announce, info_hash));
            if self.is_connected() {
                self.take_pace(now);
                swarm.pending = AnnounceEvent::Stopped;
                let message = self.announce_message(info_hash, &swarm);
                self.send(message, now);
            }
        }
    }

    /// Updates how much of a file we still lack; reaching zero announces `completed` at once.
    pub fn set_left(&mut self, info_hash: InfoHash, left: u64, now: Duration) {
        let Some(swarm) = self.swarms.get_mut(&info_hash) else {
            return;
        };
        let completed = swarm.left > 0 && left == 0;
        swarm.left = left;
        if completed {
            swarm.pending = AnnounceEvent::Completed;
            self.reschedule(info_hash, now);
            self.announce_due(now);
        }
    }

    /// Asks for more peers of a swarm now rather than at the next interval.
    pub fn announce_now(&mut self, info_hash: InfoHash, now: Duration) {
        if self.swarms.contains_key(&info_hash) {
            self.reschedule(info_hash, now);
            self.announce_due(now);
        }
    }

    /// Asks the tracker to make browser peer `to` dial us at `dial`.
    pub fn signal(&mut self, info_hash: InfoHash, to: PeerId, dial: String, now: Duration) {
        if self.is_connected() {
            self.take_pace(now);
            let from = self.peer_id;
            self.send(
                ToTracker::Signal {
                    info_hash,
                    from,
                    to,
                    dial,
                },
                now,
            );
        }
    }

    /// The connection asked for by [`Action::Connect`] is open, to its `urls[which]`.
    pub fn handle_connected(&mut self, which: usize, now: Duration) {
        if which == 1 {
            // The preferred tracker did not answer in time; the other did.
            self.current = 1 - self.current;
            self.events.push_back(AnnouncerEvent::SwitchedTracker {
                url: self.trackers[self.current].clone(),
            });
        }
        self.link = Link::Up {
            awaiting_since: None,
        };
        self.failures = 0;
        self.schedule.clear();
        for (info_hash, swarm) in &mut self.swarms {
            // A new tracker may not know us: announce every swarm there from the start.
            if swarm.pending == AnnounceEvent::Update {
                swarm.pending = AnnounceEvent::Started;
            }
            swarm.next_announce = now;
            self.schedule.insert((now, *info_hash));
        }
        self.announce_due(now);
    }

    /// The connection failed or closed.
    pub fn handle_disconnected(&mut self, now: Duration) {
        self.fail_over(now);
    }

    /// A message from the tracker.
    pub fn handle_message(&mut self, message: FromTracker, now: Duration) {
        if let Link::Up { awaiting_since } = &mut self.link {
            *awaiting_since = None;
        }
        match message {
            FromTracker::Peers {
                info_hash,
                interval_secs,
                peers,
                seeders,
                leechers,
            } => {
                if self.swarms.contains_key(&info_hash) {
                    if interval_secs > 0 {
                        let at = now + Duration::from_secs(u64::from(interval_secs));
                        self.reschedule(info_hash, at);
                    }
                    self.events.push_back(AnnouncerEvent::Peers {
                        info_hash,
                        peers,
                        seeders,
                        leechers,
                    });
                }
            }
            FromTracker::Signal {
                info_hash,
                from,
                dial,
            } => {
                self.events.push_back(AnnouncerEvent::Signal {
                    info_hash,
                    from,
                    dial,
                });
            }
            FromTracker::Error { code, message } => {
                self.events
                    .push_back(AnnouncerEvent::Refused { code, message });
            }
            FromTracker::Files { .. } | FromTracker::Metainfo { .. } => {}
        }
    }

    /// Connects, announces or gives up on a silent tracker, as the time says.
    pub fn handle_timeout(&mut self, now: Duration) {
        match self.link {
            Link::Down { retry_at } if now >= retry_at => {
                self.link = Link::Connecting { since: now };
                let other = 1 - self.current;
                self.actions.push_back(Action::Connect {
                    urls: [
                        self.trackers[self.current].clone(),
                        self.trackers[other].clone(),
                    ],
                    hedge_after: self.config.hedge_after,
                });
            }
            Link::Connecting { since } if now >= since + self.config.reply_timeout => {
                self.actions.push_back(Action::Disconnect);
                self.fail_over(now);
            }
            Link::Up {
                awaiting_since: Some(since),
            } if now >= since + self.config.reply_timeout => {
                self.actions.push_back(Action::Disconnect);
                self.fail_over(now);
            }
            Link::Up { .. } => self.announce_due(now),
            _ => {}
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Duration> {
        match self.link {
            Link::Down { retry_at } => Some(retry_at),
            Link::Connecting { since } => Some(since + self.config.reply_timeout),
            Link::Up { awaiting_since } => {
                let reply = awaiting_since.map(|since| since + self.config.reply_timeout);
                let announce = self
                    .schedule
                    .first()
                    .map(|(at, _)| (*at).max(self.pace.saturating_sub(self.burst())));
                reply.into_iter().chain(announce).min()
            }
        }
    }

    /// The next thing to do, if any.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<AnnouncerEvent> {
        self.events.pop_front()
    }

    fn fail_over(&mut self, now: Duration) {
        self.failures += 1;
        self.current = 1 - self.current;
        // The first failure switches at once; after both trackers failed, back off.
        let retry_at = if self.failures < 2 {
            now
        } else {
            let exponent = (self.failures - 2).min(16);
            now + (self.config.first_backoff * 2u32.pow(exponent)).min(self.config.max_backoff)
        };
        self.link = Link::Down { retry_at };
        self.events.push_back(AnnouncerEvent::SwitchedTracker {
            url: self.trackers[self.current].clone(),
        });
    }

    /// Sends the announces that are due, as many as the pace allows.
    fn announce_due(&mut self, now: Duration) {
        if !self.is_connected() {
            return;
        }
        while let Some(&(at, info_hash)) = self.schedule.first() {
            if at > now || self.pace > now + self.burst() {
                break;
            }
            self.take_pace(now);
            let swarm = &self.swarms[&info_hash];
            let message = self.announce_message(info_hash, swarm);
            self.swarms.get_mut(&info_hash).expect("scheduled").pending = AnnounceEvent::Update;
            // Until the reply sets the real interval, do not announce this swarm again.
            self.reschedule(info_hash, now + self.config.reply_timeout);
            self.send(message, now);
        }
    }

    /// Moves a swarm's next announce to `at`.
    fn reschedule(&mut self, info_hash: InfoHash, at: Duration) {
        let swarm = self.swarms.get_mut(&info_hash).expect("a known swarm");
        self.schedule.remove(&(swarm.next_announce, info_hash));
        swarm.next_announce = at;
        self.schedule.insert((at, info_hash));
    }

    /// The spacing of announces at the configured rate.
    fn spacing(&self) -> Duration {
        Duration::from_secs(1) / self.config.announce_rate.max(1)
    }

    /// How far ahead of now the pace may run: a second's worth of announces.
    fn burst(&self) -> Duration {
        self.spacing() * self.config.announce_rate.max(1)
    }

    /// Counts one message against the pace.
    fn take_pace(&mut self, now: Duration) {
        self.pace = self.pace.max(now) + self.spacing();
    }

    fn announce_message(&self, info_hash: InfoHash, swarm: &Swarm) -> ToTracker {
        ToTracker::Announce(Announce {
            info_hash,
            peer_id: self.peer_id,
            event: swarm.pending,
            address: swarm.address.clone(),
            left: swarm.left,
            numwant: self.config.numwant,
            // Only a start registers the file; every new tracker connection starts again.
            metainfo: (swarm.pending == AnnounceEvent::Started)
                .then(|| swarm.metainfo.clone())
                .flatten(),
        })
    }

    fn send(&mut self, message: ToTracker, now: Duration) {
        if let Link::Up { awaiting_since } = &mut self.link {
            if awaiting_since.is_none() && expects_reply(&message) {
                *awaiting_since = Some(now);
            }
        }
        self.actions.push_back(Action::Send(message));
    }
}

fn expects_reply(message: &ToTracker) -> bool {
    !matches!(message, ToTracker::Announce(a) if a.event == AnnounceEvent::Stopped)
}

#[cfg(test)]
mod tests;
