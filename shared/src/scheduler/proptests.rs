//! Properties over random call sequences, and a randomized swarm that must always finish.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;

use super::rng::SplitMix64;
use super::*;
use crate::piece::PIECE_SIZE;

const PEERS: u64 = 4;
const TIMEOUT: Duration = Duration::from_secs(5);

fn config(max_in_flight: u32, endgame: u32) -> SchedulerConfig {
    SchedulerConfig {
        max_in_flight_per_peer: max_in_flight,
        endgame_max_requests_per_block: endgame,
        request_timeout: TIMEOUT,
        max_hash_failures: 2,
    }
}

/// A file of `pieces` pieces whose last piece is `last` bytes (at most a piece).
fn lengths(pieces: u32, last: u32) -> Lengths {
    let total = u64::from(pieces - 1) * u64::from(PIECE_SIZE) + u64::from(last);
    Lengths::new(total).unwrap()
}

fn bitfield(bools: &[bool]) -> Bitfield {
    let mut bitfield = Bitfield::new(bools.len() as u32);
    for (piece, _) in bools.iter().enumerate().filter(|(_, &b)| b) {
        bitfield.set_bit(piece as u32);
    }
    bitfield
}

/// Every outstanding request, from the scheduler's own records.
fn outstanding(s: &Scheduler) -> Vec<(PeerKey, BlockRef)> {
    s.peers
        .iter()
        .flat_map(|(&peer, state)| state.in_flight.keys().map(move |&key| (peer, key)))
        .map(|(peer, key)| (peer, s.block_ref(key)))
        .collect()
}

fn requesters(s: &Scheduler, block: BlockRef) -> usize {
    let key = super::block_key(block);
    match s
        .downloads
        .get(&key.piece)
        .map(|d| &d.blocks[key.block as usize])
    {
        Some(Block::Missing { requesters }) => requesters.len(),
        _ => 0,
    }
}

/// Asks for one request and checks the rules every request must follow.
fn request_checked(s: &mut Scheduler, peer: PeerKey, now: Duration) -> Option<BlockRef> {
    let endgame = s.in_endgame();
    let before = s.clone();
    let block = s.next_request(peer, now)?;
    let piece = block.piece;
    assert!(
        matches!(
            before.piece_state(piece),
            PieceState::Queued | PieceState::InFlight
        ),
        "requested piece {piece:?} in state {:?}",
        before.piece_state(piece)
    );
    assert!(
        before.peers[&peer].has.get(piece),
        "the peer lacks {piece:?}"
    );
    let others = requesters(&before, block);
    assert!(
        others == 0 || endgame,
        "{block:?} already requested outside endgame"
    );
    assert!(s.in_flight(peer) as u32 <= s.config().max_in_flight_per_peer);
    if before.piece_state(piece) == PieceState::Queued {
        check_new_piece_choice(&before, peer, piece);
    }
    Some(block)
}

/// A piece is only started when the peer has no partial piece to continue, and it is one of
/// the rarest queued pieces the peer has.
fn check_new_piece_choice(before: &Scheduler, peer: PeerKey, piece: ValidPieceIndex) {
    let has = &before.peers[&peer].has;
    assert!(
        before
            .open
            .values()
            .all(|&open| !before.may_continue(peer, open)),
        "started {piece:?} while a partial piece was available"
    );
    let rarest = before
        .lengths()
        .pieces()
        .filter(|&p| has.get(p) && before.piece_state(p) == PieceState::Queued)
        .map(|p| before.availability(p))
        .min();
    assert_eq!(
        Some(before.availability(piece)),
        rarest,
        "{piece:?} is not rarest"
    );
}

#[derive(Debug, Clone)]
enum Op {
    Add(u64, Vec<bool>),
    Have(u64, u32),
    Choke(u64),
    Unchoke(u64),
    Remove(u64),
    Fill(u64),
    Deliver(prop::sample::Index, bool),
    Reject(prop::sample::Index),
    Advance(u64),
}

fn op(pieces: u32) -> impl Strategy<Value = Op> {
    let peer = 0..PEERS;
    prop_oneof![
        1 => (peer.clone(), proptest::collection::vec(any::<bool>(), pieces as usize))
            .prop_map(|(p, bits)| Op::Add(p, bits)),
        1 => (peer.clone(), 0..pieces).prop_map(|(p, i)| Op::Have(p, i)),
        1 => peer.clone().prop_map(Op::Choke),
        2 => peer.clone().prop_map(Op::Unchoke),
        1 => peer.clone().prop_map(Op::Remove),
        4 => peer.prop_map(Op::Fill),
        6 => (any::<prop::sample::Index>(), any::<bool>()).prop_map(|(i, ok)| Op::Deliver(i, ok)),
        1 => any::<prop::sample::Index>().prop_map(Op::Reject),
        1 => (0..8u64).prop_map(Op::Advance),
    ]
}

/// Applies one operation, checking the rule each one is about.
fn apply(s: &mut Scheduler, op: Op, now: &mut Duration) {
    match op {
        Op::Add(p, bits) => {
            if s.handle_peer_added(PeerKey(p), bitfield(&bits)).is_ok() {
                s.handle_unchoked(PeerKey(p));
            }
        }
        Op::Have(p, i) => {
            let index = s.lengths().validate_piece_index(i).unwrap();
            s.handle_have(PeerKey(p), index);
        }
        Op::Choke(p) => s.handle_choked(PeerKey(p)),
        Op::Unchoke(p) => s.handle_unchoked(PeerKey(p)),
        Op::Remove(p) => {
            s.handle_peer_removed(PeerKey(p));
            assert_eq!(s.in_flight(PeerKey(p)), 0);
            assert!(outstanding(s).iter().all(|&(peer, _)| peer != PeerKey(p)));
        }
        Op::Fill(p) => while request_checked(s, PeerKey(p), *now).is_some() {},
        Op::Deliver(i, hash_ok) => {
            let all = outstanding(s);
            if all.is_empty() {
                return;
            }
            let (peer, block) = all[i.index(all.len())];
            match s.handle_block_received(peer, block) {
                BlockOutcome::PieceComplete(piece) if hash_ok => s.handle_hash_ok(piece).unwrap(),
                BlockOutcome::PieceComplete(piece) => {
                    s.handle_hash_failed(piece).unwrap();
                    assert_eq!(s.piece_state(piece), PieceState::Queued);
                }
                BlockOutcome::Stored => {}
                other => panic!("an outstanding request was answered with {other:?}"),
            }
        }
        Op::Reject(i) => {
            let all = outstanding(s);
            if !all.is_empty() {
                let (peer, block) = all[i.index(all.len())];
                s.handle_request_rejected(peer, block);
            }
        }
        Op::Advance(seconds) => {
            *now += Duration::from_secs(seconds);
            s.handle_timeout(*now);
            assert!(s.poll_timeout().is_none_or(|deadline| deadline > *now));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every request follows the rules (never a piece we have, never a piece the peer lacks,
    /// never a block already requested outside endgame, never past the per-peer limit), and
    /// every invariant of STATE.md holds after every call.
    #[test]
    fn random_calls_keep_every_rule(
        pieces in 1u32..12,
        last in 1u32..=PIECE_SIZE,
        max_in_flight in 1u32..12,
        endgame in 1u32..4,
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(12), 1..120),
    ) {
        let lengths = lengths(pieces, last);
        let mut s =
            Scheduler::new(lengths, Bitfield::new(pieces), config(max_in_flight, endgame), seed)
                .unwrap();
        let mut now = Duration::ZERO;
        for op in ops {
            let op = clamp(op, pieces);
            apply(&mut s, op, &mut now);
            s.check_invariants();
            while let Some(event) = s.poll_event() {
                if let Event::Ban { peer } = event {
                    prop_assert!(s.is_banned(peer));
                    prop_assert_eq!(s.in_flight(peer), 0);
                }
            }
        }
    }
}

/// Fits an operation generated for 12 pieces to a file of `pieces`.
fn clamp(op: Op, pieces: u32) -> Op {
    match op {
        Op::Add(p, mut bits) => {
            bits.truncate(pieces as usize);
            Op::Add(p, bits)
        }
        Op::Have(p, i) => Op::Have(p, i % pieces),
        other => other,
    }
}

/// One peer of the simulated swarm.
#[derive(Debug, Clone)]
struct SimPeer {
    has: Vec<bool>,
    /// Never leaves by itself.
    stays: bool,
    /// Sends garbage instead of data.
    corrupt: bool,
    connected: bool,
}

/// A swarm driving a scheduler the way a real driver does, with a random network: requests
/// lost, answers reordered and late, rejections, chokes (if `chokes`), departures, corrupt
/// data. Without chokes, which release requests, lost requests are only recovered by
/// timeouts. Returns whether the download finished within `max_steps`, or `None` if it stopped
/// being possible (a missing piece is held by no connected peer).
fn simulate(
    lengths: Lengths,
    peers: &mut [SimPeer],
    chokes: bool,
    seed: u64,
    max_steps: usize,
) -> Option<bool> {
    let mut s = Scheduler::new(
        lengths,
        Bitfield::new(lengths.piece_count()),
        config(4, 2),
        seed,
    )
    .unwrap();
    let mut rng = SplitMix64::new(seed ^ 0x5eed);
    let mut now = Duration::ZERO;
    let mut network: Vec<(PeerKey, BlockRef)> = Vec::new();
    let mut corrupt_blocks: BTreeMap<BlockRef, bool> = BTreeMap::new();
    let mut reannounce: Vec<(PeerKey, ValidPieceIndex)> = Vec::new();
    for (i, peer) in peers.iter().enumerate() {
        s.handle_peer_added(PeerKey(i as u64), bitfield(&peer.has))
            .unwrap();
        s.handle_unchoked(PeerKey(i as u64));
    }
    for _ in 0..max_steps {
        if s.is_complete() {
            return Some(true);
        }
        if !finishable(&s, peers) {
            return None;
        }
        // The driver fills every pipeline; one request in ten is lost on the way.
        for (i, _) in peers.iter().enumerate().filter(|(_, peer)| peer.connected) {
            let key = PeerKey(i as u64);
            while let Some(block) = request_checked(&mut s, key, now) {
                if rng.below(10) != 0 {
                    network.push((key, block));
                }
            }
        }
        match rng.below(20) {
            0..=13 if !network.is_empty() => {
                let (key, block) = network.swap_remove(rng.below(network.len() as u32) as usize);
                let corrupt = peers[key.0 as usize].corrupt;
                match s.handle_block_received(key, block) {
                    BlockOutcome::Stored => {
                        corrupt_blocks.insert(block, corrupt);
                    }
                    BlockOutcome::PieceComplete(piece) => {
                        corrupt_blocks.insert(block, corrupt);
                        let blocks: Vec<BlockRef> = s.lengths().blocks(piece).collect();
                        let bad = blocks
                            .iter()
                            .map(|b| corrupt_blocks.remove(b) == Some(true))
                            .fold(false, |any, this| any | this);
                        if bad {
                            s.handle_hash_failed(piece).unwrap();
                        } else {
                            s.handle_hash_ok(piece).unwrap();
                        }
                    }
                    BlockOutcome::Duplicate | BlockOutcome::Unrequested => {}
                }
            }
            14 if !network.is_empty() => {
                let (key, block) = network.swap_remove(rng.below(network.len() as u32) as usize);
                s.handle_request_rejected(key, block);
                reannounce.push((key, block.piece));
            }
            15 => {
                let i = rng.below(peers.len() as u32) as usize;
                if peers[i].connected && !peers[i].stays {
                    peers[i].connected = false;
                    s.handle_peer_removed(PeerKey(i as u64));
                    network.retain(|&(key, _)| key.0 != i as u64);
                }
            }
            16 if chokes => {
                // A choke drops the peer's queue; the unchoke follows some time later.
                let i = rng.below(peers.len() as u32) as usize;
                s.handle_choked(PeerKey(i as u64));
                network.retain(|&(key, _)| key.0 != i as u64);
            }
            17 => {
                for i in 0..peers.len() {
                    s.handle_unchoked(PeerKey(i as u64));
                }
                for (key, piece) in reannounce.drain(..) {
                    s.handle_have(key, piece);
                }
            }
            _ => {
                now += Duration::from_millis(u64::from(rng.below(3000)));
                s.handle_timeout(now);
            }
        }
        while let Some(event) = s.poll_event() {
            match event {
                // Half the Cancels arrive too late and the block comes anyway.
                Event::Cancel { peer, block } => {
                    if rng.below(2) == 0 {
                        network.retain(|&entry| entry != (peer, block));
                    }
                }
                Event::Ban { peer } => {
                    peers[peer.0 as usize].connected = false;
                    network.retain(|&(key, _)| key != peer);
                }
            }
        }
        s.check_invariants();
    }
    Some(s.is_complete())
}

/// Whether every missing piece is held by a connected peer, or will be announced again.
fn finishable(s: &Scheduler, peers: &[SimPeer]) -> bool {
    s.lengths().pieces().all(|piece| {
        s.piece_state(piece) == PieceState::Have
            || peers
                .iter()
                .any(|peer| peer.connected && peer.has[piece.get() as usize])
    })
}

/// Random peers over `pieces` pieces; every piece is held by at least one honest peer that
/// stays.
fn swarm(pieces: u32) -> impl Strategy<Value = Vec<SimPeer>> {
    let peer = (
        proptest::collection::vec(any::<bool>(), pieces as usize),
        any::<bool>(),
    );
    proptest::collection::vec(peer, 1..6).prop_map(move |raw| {
        let mut peers: Vec<SimPeer> = raw
            .into_iter()
            .map(|(has, stays)| SimPeer {
                has,
                stays,
                corrupt: false,
                connected: true,
            })
            .collect();
        peers[0].stays = true;
        for piece in 0..pieces as usize {
            if !peers.iter().any(|p| p.stays && p.has[piece]) {
                peers[0].has[piece] = true;
            }
        }
        peers
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// With honest peers, the download always finishes, whatever the network does, and within
    /// a bounded number of steps, so a livelock fails fast instead of hanging.
    #[test]
    fn an_honest_swarm_always_finishes(
        (pieces, peers) in (1u32..10).prop_flat_map(|n| (Just(n), swarm(n))),
        last in 1u32..=PIECE_SIZE,
        chokes in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut peers = peers;
        let result = simulate(lengths(pieces, last), &mut peers, chokes, seed, 20_000);
        prop_assert_eq!(result, Some(true));
    }

    /// A peer that sends garbage never stops the download, and no honest peer is banned: one
    /// that shared a failed piece with the corrupt peer is only put on parole.
    #[test]
    fn a_swarm_with_a_corrupt_peer_finishes_or_runs_out_of_sources(
        (pieces, peers) in (1u32..10).prop_flat_map(|n| (Just(n), swarm(n))),
        extra in proptest::collection::vec(any::<bool>(), 10),
        seed in any::<u64>(),
    ) {
        let mut peers = peers;
        peers.push(SimPeer {
            has: extra[..pieces as usize].to_vec(),
            stays: true,
            corrupt: true,
            connected: true,
        });
        let result = simulate(lengths(pieces, PIECE_SIZE), &mut peers, true, seed, 20_000);
        prop_assert_eq!(result, Some(true));
        let honest = &peers[..peers.len() - 1];
        prop_assert!(honest.iter().all(|peer| peer.connected || !peer.stays));
    }
}
