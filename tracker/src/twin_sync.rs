//! What goes over a twin link after authentication: the whole state in bounded messages, then
//! each change; and, on the receiving side, the state being gathered until it is complete.
//!
//! The state is never encoded as one message: however many peers and files a tracker holds,
//! each message carries at most [`SYNC_PEERS_PER_MESSAGE`] peers or one `.mtorrent`, and is
//! encoded only when the link's writer is ready to send it.

use std::sync::Arc;

use mtorrent_shared::tracker::{SyncPeer, ToTracker, SYNC_PEERS_PER_MESSAGE};

/// One item queued for the twin.
#[derive(Debug)]
pub enum TwinFrame {
    /// A change, encoded.
    Change(String),
    /// The whole state, encoded a message at a time as it is sent.
    State(TwinState),
}

impl TwinFrame {
    /// The texts to send, in order.
    pub fn into_texts(self) -> Box<dyn Iterator<Item = String> + Send> {
        match self {
            TwinFrame::Change(text) => Box::new(std::iter::once(text)),
            TwinFrame::State(state) => Box::new(state.into_texts()),
        }
    }
}

/// A snapshot of a tracker's own peers and its catalog's documents (shared, not copied).
#[derive(Debug, Default)]
pub struct TwinState {
    /// Peers connected to this tracker.
    pub peers: Vec<SyncPeer>,
    /// Every `.mtorrent` in the catalog.
    pub files: Vec<Arc<str>>,
}

impl TwinState {
    /// `sync_peers` messages of at most [`SYNC_PEERS_PER_MESSAGE`] peers, a `sync_file` per
    /// document, then `sync_state_end`, each encoded when it is reached.
    pub fn into_texts(self) -> impl Iterator<Item = String> + Send {
        let TwinState { peers, files } = self;
        let mut peers = peers.into_iter().peekable();
        let peer_messages = std::iter::from_fn(move || {
            peers.peek()?;
            let chunk: Vec<SyncPeer> = peers.by_ref().take(SYNC_PEERS_PER_MESSAGE).collect();
            Some(ToTracker::SyncPeers { peers: chunk }.encode())
        });
        let file_messages = files.into_iter().map(|document| {
            ToTracker::SyncFile {
                metainfo: document.to_string(),
            }
            .encode()
        });
        peer_messages
            .chain(file_messages)
            .chain(std::iter::once(ToTracker::SyncStateEnd.encode()))
    }
}

/// The twin's state as it arrives over one link: its peers are gathered until
/// `sync_state_end`, then replace what this tracker had from the twin all at once, so a link
/// that breaks halfway never leaves half a state.
#[derive(Debug, Default)]
pub struct TwinInbox {
    peers: Vec<SyncPeer>,
}

impl TwinInbox {
    /// Adds a part of the twin's state.
    pub fn gather(&mut self, peers: Vec<SyncPeer>) {
        self.peers.extend(peers);
    }

    /// The whole state gathered since the link came up, leaving the inbox empty.
    pub fn take(&mut self) -> Vec<SyncPeer> {
        std::mem::take(&mut self.peers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mtorrent_shared::tracker::{PeerAddress, PeerInfo};
    use mtorrent_shared::{InfoHash, PeerId};

    fn peer(n: u32) -> SyncPeer {
        let mut id = [0u8; 20];
        id[..4].copy_from_slice(&n.to_be_bytes());
        SyncPeer {
            info_hash: InfoHash([1; 20]),
            peer: PeerInfo {
                peer_id: PeerId(id),
                address: PeerAddress::Browser,
                complete: false,
            },
        }
    }

    #[test]
    fn a_large_state_goes_in_bounded_messages_and_arrives_whole() {
        let count = SYNC_PEERS_PER_MESSAGE * 2 + 7;
        let state = TwinState {
            peers: (0..count as u32).map(peer).collect(),
            files: vec![Arc::from("{\"a\":1}"), Arc::from("{\"b\":2}")],
        };
        let mut inbox = TwinInbox::default();
        let mut files = Vec::new();
        let mut ended = false;
        let texts: Vec<String> = TwinFrame::State(state).into_texts().collect();
        assert_eq!(texts.len(), 3 + 2 + 1);
        for text in texts {
            assert!(!ended, "nothing after the end");
            match ToTracker::decode(&text).unwrap() {
                ToTracker::SyncPeers { peers } => {
                    assert!(peers.len() <= SYNC_PEERS_PER_MESSAGE);
                    inbox.gather(peers);
                }
                ToTracker::SyncFile { metainfo } => files.push(metainfo),
                ToTracker::SyncStateEnd => ended = true,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(ended);
        assert_eq!(files, ["{\"a\":1}", "{\"b\":2}"]);
        let peers = inbox.take();
        assert_eq!(peers, (0..count as u32).map(peer).collect::<Vec<_>>());
        assert!(inbox.take().is_empty());
    }

    #[test]
    fn an_empty_state_is_just_its_end() {
        let texts: Vec<String> = TwinState::default().into_texts().collect();
        assert_eq!(texts, [ToTracker::SyncStateEnd.encode()]);
    }
}
