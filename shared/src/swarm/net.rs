//! Swarm cores wired together in memory, as quinn's test `Pair`: every message crosses the
//! real codec, storage is a byte array per node, and time advances a fixed step per round.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::wire::PieceHeader;
use crate::PieceHash;

/// How much time one round of [`Net::step`] takes.
pub(super) const STEP: Duration = Duration::from_millis(100);

pub(super) struct Node {
    pub swarm: Swarm,
    /// Its copy of the file: the pieces it has, zeros elsewhere.
    pub data: Vec<u8>,
    /// Serves every block with its bytes corrupted.
    pub liar: bool,
    /// Takes blocks through [`Swarm::handle_piece_header`], as the browser does.
    pub zero_copy: bool,
    pub gone: bool,
}

struct Link {
    ends: [(usize, PeerKey); 2],
    /// Frames on their way to `ends[0]` and `ends[1]`.
    queues: [VecDeque<Bytes>; 2],
    open: bool,
}

pub(super) struct Net {
    pub truth: Vec<u8>,
    pub lengths: Lengths,
    hashes: Vec<PieceHash>,
    pub nodes: Vec<Node>,
    links: Vec<Link>,
    pub now: Duration,
    pub config: SwarmConfig,
}

impl Net {
    pub fn new(truth: Vec<u8>, config: SwarmConfig) -> Self {
        let lengths = Lengths::new(truth.len() as u64).unwrap();
        let hashes = lengths
            .pieces()
            .map(|p| PieceHash::of(&truth[piece_range(&lengths, p)]))
            .collect();
        Self {
            truth,
            lengths,
            hashes,
            nodes: Vec::new(),
            links: Vec::new(),
            now: Duration::ZERO,
            config,
        }
    }

    /// A node that starts with the pieces in `have`.
    pub fn add_node(&mut self, have: Bitfield, liar: bool, zero_copy: bool) -> usize {
        let index = self.nodes.len();
        let mut data = vec![0; self.truth.len()];
        for piece in have.iter_ones() {
            let range = piece_range(
                &self.lengths,
                self.lengths.validate_piece_index(piece).unwrap(),
            );
            data[range.clone()].copy_from_slice(&self.truth[range]);
        }
        let swarm = Swarm::new(
            self.lengths,
            InfoHash([7; 20]),
            PeerId([index as u8 + 1; 20]),
            have,
            self.config.clone(),
            index as u64,
        )
        .unwrap();
        self.nodes.push(Node {
            swarm,
            data,
            liar,
            zero_copy,
            gone: false,
        });
        index
    }

    /// Opens a connection from `a` to `b`.
    pub fn connect(&mut self, a: usize, b: usize) {
        let ka = self.nodes[a].swarm.add_peer(self.now);
        let kb = self.nodes[b].swarm.add_peer(self.now);
        self.links.push(Link {
            ends: [(a, ka), (b, kb)],
            queues: [VecDeque::new(), VecDeque::new()],
            open: true,
        });
    }

    /// Connects `node` to every node still there.
    pub fn connect_to_all(&mut self, node: usize) {
        for other in 0..self.nodes.len() {
            if other != node && !self.nodes[other].gone {
                self.connect(node, other);
            }
        }
    }

    /// The node leaves: its connections close.
    pub fn remove_node(&mut self, node: usize) {
        self.nodes[node].gone = true;
        for link in 0..self.links.len() {
            if self.links[link].open && self.links[link].ends.iter().any(|&(n, _)| n == node) {
                self.close_link(link);
            }
        }
    }

    fn close_link(&mut self, link: usize) {
        let link = &mut self.links[link];
        link.open = false;
        for (node, key) in link.ends {
            self.nodes[node].swarm.handle_peer_closed(key);
        }
    }

    /// Whether every node still there that does not lie has the whole file.
    pub fn honest_complete(&self) -> bool {
        self.nodes
            .iter()
            .filter(|n| !n.gone && !n.liar)
            .all(|n| n.swarm.is_complete())
    }

    /// Runs rounds until every honest node has the whole file; returns the rounds taken.
    pub fn drive_bounded(&mut self, max_steps: usize) -> usize {
        for step in 0..max_steps {
            if self.honest_complete() {
                return step;
            }
            self.step();
        }
        panic!("the transfer did not finish within {max_steps} rounds");
    }

    /// One round: every connection sends what it has and every node handles what arrived,
    /// then storage work and timers; time moves by [`STEP`].
    pub fn step(&mut self) {
        for link in 0..self.links.len() {
            if !self.links[link].open {
                continue;
            }
            for side in 0..2 {
                let (node, key) = self.links[link].ends[side];
                while let Some(message) = self.nodes[node].swarm.poll_transmit(key, self.now) {
                    self.links[link].queues[1 - side].push_back(message.to_bytes());
                }
            }
            for side in 0..2 {
                while let Some(frame) = self.links[link].queues[side].pop_front() {
                    let message = Message::decode_frame(frame).unwrap();
                    if self.deliver(link, side, message).is_err() {
                        self.close_link(link);
                        break;
                    }
                }
                if !self.links[link].open {
                    break;
                }
            }
        }
        for node in 0..self.nodes.len() {
            if !self.nodes[node].gone {
                self.storage_work(node);
            }
        }
        self.now += STEP;
    }

    fn deliver(&mut self, link: usize, side: usize, message: Message) -> Result<(), SessionError> {
        let (node, key) = self.links[link].ends[side];
        let now = self.now;
        let n = &mut self.nodes[node];
        match message {
            Message::Piece {
                piece,
                offset,
                data,
            } if n.zero_copy => {
                let header = PieceHeader {
                    piece,
                    offset,
                    data_len: data.len(),
                };
                if let Some(block) = n.swarm.handle_piece_header(key, now, header)? {
                    let at = (self.lengths.piece_offset(block.piece) + u64::from(offset)) as usize;
                    n.data[at..at + data.len()].copy_from_slice(&data);
                }
                Ok(())
            }
            message => n.swarm.handle_message(key, now, message),
        }
    }

    /// Carries out a node's storage events and timers, and checks its wakeups.
    fn storage_work(&mut self, node: usize) {
        if self.nodes[node]
            .swarm
            .poll_timeout()
            .is_some_and(|t| t <= self.now)
        {
            self.nodes[node].swarm.handle_timeout(self.now);
        }
        let lengths = self.lengths;
        while let Some(event) = self.nodes[node].swarm.poll_event() {
            let n = &mut self.nodes[node];
            match event {
                SwarmEvent::ReadBlock { peer, block } => {
                    let at = (lengths.piece_offset(block.piece) + u64::from(block.offset)) as usize;
                    let mut bytes = n.data[at..at + block.length as usize].to_vec();
                    if n.liar {
                        bytes.iter_mut().for_each(|b| *b ^= 0x5a);
                    }
                    n.swarm.send_block(peer, block, Bytes::from(bytes));
                }
                SwarmEvent::WriteBlock { block, data, .. } => {
                    assert!(!n.zero_copy, "a zero-copy node keeps the bytes itself");
                    let at = (lengths.piece_offset(block.piece) + u64::from(block.offset)) as usize;
                    n.data[at..at + data.len()].copy_from_slice(&data);
                }
                SwarmEvent::VerifyPiece(piece) => {
                    let ok = PieceHash::of(&n.data[piece_range(&lengths, piece)])
                        == self.hashes[piece.get() as usize];
                    n.swarm.handle_piece_verified(piece, ok);
                }
                SwarmEvent::Close { peer, .. } => {
                    let link = self
                        .links
                        .iter()
                        .position(|l| l.open && l.ends.contains(&(node, peer)))
                        .expect("a close names an open connection");
                    self.close_link(link);
                }
            }
        }
        while let Some(key) = self.nodes[node].swarm.poll_wakeup() {
            assert!(
                self.nodes[node].swarm.session(key).is_some()
                    || self.links.iter().any(|l| l.ends.contains(&(node, key)))
            );
        }
    }
}

pub(super) fn piece_range(lengths: &Lengths, piece: ValidPieceIndex) -> std::ops::Range<usize> {
    let from = lengths.piece_offset(piece) as usize;
    from..from + lengths.piece_length(piece) as usize
}

/// A file of `size` bytes whose content depends on `salt`.
pub(super) fn file(size: usize, salt: u8) -> Vec<u8> {
    (0..size)
        .map(|i| (i.wrapping_mul(131) % 251) as u8 ^ salt)
        .collect()
}
