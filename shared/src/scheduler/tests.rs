//! One test per rule of the module documentation.

use std::collections::BTreeSet;
use std::time::Duration;

use super::*;
use crate::piece::{BLOCK_SIZE, PIECE_SIZE};

const BLOCKS_PER_PIECE: u32 = PIECE_SIZE / BLOCK_SIZE;
const A: PeerKey = PeerKey(1);
const B: PeerKey = PeerKey(2);
const C: PeerKey = PeerKey(3);

fn config(max_in_flight: u32) -> SchedulerConfig {
    SchedulerConfig {
        max_in_flight_per_peer: max_in_flight,
        endgame_max_requests_per_block: 2,
        request_timeout: Duration::from_secs(10),
        max_hash_failures: 2,
    }
}

fn lengths_of(pieces: u32) -> Lengths {
    Lengths::new(u64::from(pieces) * u64::from(PIECE_SIZE)).unwrap()
}

fn new_scheduler(pieces: u32, max_in_flight: u32, seed: u64) -> Scheduler {
    let lengths = lengths_of(pieces);
    Scheduler::new(lengths, Bitfield::new(pieces), config(max_in_flight), seed).unwrap()
}

fn bits(len: u32, set: &[u32]) -> Bitfield {
    let mut bitfield = Bitfield::new(len);
    for &piece in set {
        bitfield.set_bit(piece);
    }
    bitfield
}

fn piece(s: &Scheduler, index: u32) -> ValidPieceIndex {
    s.lengths().validate_piece_index(index).unwrap()
}

/// Adds an unchoking peer.
fn add(s: &mut Scheduler, peer: PeerKey, has: Bitfield) {
    s.handle_peer_added(peer, has).unwrap();
    s.handle_unchoked(peer);
}

/// Every request the peer may be sent now.
fn fill(s: &mut Scheduler, peer: PeerKey, now: Duration) -> Vec<BlockRef> {
    let blocks: Vec<BlockRef> = std::iter::from_fn(|| s.next_request(peer, now)).collect();
    s.check_invariants();
    blocks
}

fn events(s: &mut Scheduler) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// Delivers every block of `blocks` from `peer`; returns the last outcome.
fn deliver(s: &mut Scheduler, peer: PeerKey, blocks: &[BlockRef]) -> BlockOutcome {
    let mut last = BlockOutcome::Unrequested;
    for &block in blocks {
        last = s.handle_block_received(peer, block);
        s.check_invariants();
    }
    last
}

const T0: Duration = Duration::ZERO;

#[test]
fn refuses_bitfields_of_another_length_and_zero_limits() {
    let lengths = lengths_of(10);
    let err = Scheduler::new(lengths, Bitfield::new(9), config(1), 0).unwrap_err();
    assert_eq!(
        err,
        SchedulerError::BitfieldLength {
            expected: 10,
            actual: 9
        }
    );
    let mut zero = config(0);
    let err = Scheduler::new(lengths, Bitfield::new(10), zero.clone(), 0).unwrap_err();
    assert_eq!(err, SchedulerError::ZeroLimit("max_in_flight_per_peer"));
    zero.max_in_flight_per_peer = 1;
    zero.max_hash_failures = 0;
    let err = Scheduler::new(lengths, Bitfield::new(10), zero, 0).unwrap_err();
    assert_eq!(err, SchedulerError::ZeroLimit("max_hash_failures"));
    let mut s = new_scheduler(10, 1, 0);
    let err = s.handle_peer_added(A, Bitfield::new(11)).unwrap_err();
    assert!(matches!(err, SchedulerError::BitfieldLength { .. }));
    add(&mut s, A, Bitfield::new(10));
    let err = s.handle_peer_added(A, Bitfield::new(10)).unwrap_err();
    assert_eq!(err, SchedulerError::PeerAlreadyAdded(A));
}

#[test]
fn resumed_pieces_count_and_are_never_requested() {
    // 3 full pieces and a 1000-byte last piece; pieces 1 and 3 are on disk already.
    let lengths = Lengths::new(3 * u64::from(PIECE_SIZE) + 1000).unwrap();
    let mut s = Scheduler::new(lengths, bits(4, &[1, 3]), config(100), 0).unwrap();
    assert_eq!(s.pieces_have(), 2);
    assert_eq!(s.bytes_have(), u64::from(PIECE_SIZE) + 1000);
    assert_eq!(s.piece_state(piece(&s, 3)), PieceState::Have);
    add(&mut s, A, Bitfield::full(4));
    let requested: BTreeSet<u32> = fill(&mut s, A, T0).iter().map(|b| b.piece.get()).collect();
    assert_eq!(requested, BTreeSet::from([0, 2]));
}

#[test]
fn empty_file_is_complete_at_once() {
    let mut s = new_scheduler(0, 4, 0);
    assert!(s.is_complete());
    add(&mut s, A, Bitfield::new(0));
    assert_eq!(s.next_request(A, T0), None);
    assert!(!s.is_interesting(A));
}

#[test]
fn peers_start_choked_and_choking_releases_requests() {
    let mut s = new_scheduler(2, 4, 0);
    s.handle_peer_added(A, Bitfield::full(2)).unwrap();
    assert_eq!(s.next_request(A, T0), None, "peers start choking us");
    s.handle_unchoked(A);
    let first = fill(&mut s, A, T0);
    assert_eq!(first.len(), 4);
    assert_eq!(s.piece_state(first[0].piece), PieceState::InFlight);
    s.handle_choked(A);
    s.check_invariants();
    assert_eq!(s.in_flight(A), 0);
    assert_eq!(s.next_request(A, T0), None);
    // Nothing of the piece was received, so it is queued again as if never started.
    assert_eq!(s.piece_state(first[0].piece), PieceState::Queued);
    assert_eq!(
        s.handle_block_received(A, first[0]),
        BlockOutcome::Unrequested
    );
}

#[test]
fn only_pieces_the_peer_has_are_requested() {
    let mut s = new_scheduler(5, 100, 0);
    add(&mut s, A, bits(5, &[1, 3]));
    let blocks = fill(&mut s, A, T0);
    assert_eq!(blocks.len() as u32, 2 * BLOCKS_PER_PIECE);
    assert!(blocks.iter().all(|b| [1, 3].contains(&b.piece.get())));
    assert!(s.is_interesting(A));
    add(&mut s, B, Bitfield::new(5));
    assert!(!s.is_interesting(B));
    assert_eq!(s.next_request(B, T0), None);
}

#[test]
fn rarest_piece_first() {
    for seed in 0..20 {
        let mut s = new_scheduler(4, 1, seed);
        s.handle_peer_added(B, bits(4, &[0, 1, 3])).unwrap();
        s.handle_peer_added(C, bits(4, &[0, 3])).unwrap();
        add(&mut s, A, Bitfield::full(4));
        // Availability with A: piece 0 and 3 → 3, piece 1 → 2, piece 2 → 1.
        assert_eq!(s.availability(piece(&s, 2)), 1);
        assert_eq!(s.next_request(A, T0).unwrap().piece.get(), 2, "seed {seed}");
        s.handle_unchoked(B);
        assert_eq!(s.next_request(B, T0).unwrap().piece.get(), 1, "seed {seed}");
    }
}

#[test]
fn ties_are_broken_by_the_seed() {
    let firsts: BTreeSet<u32> = (0..30)
        .map(|seed| {
            let mut s = new_scheduler(16, 1, seed);
            add(&mut s, A, Bitfield::full(16));
            s.next_request(A, T0).unwrap().piece.get()
        })
        .collect();
    assert!(firsts.len() >= 6, "only {firsts:?}");
    // And the same seed gives the same choice.
    let pick = |seed| {
        let mut s = new_scheduler(16, 1, seed);
        add(&mut s, A, Bitfield::full(16));
        s.next_request(A, T0)
    };
    assert_eq!(pick(5), pick(5));
}

#[test]
fn started_pieces_are_finished_first() {
    let mut s = new_scheduler(8, 1, 3);
    add(&mut s, A, Bitfield::full(8));
    add(&mut s, B, Bitfield::full(8));
    let a = s.next_request(A, T0).unwrap();
    let b = s.next_request(B, T0).unwrap();
    assert_eq!(b.piece, a.piece, "B continues A's piece");
    assert_eq!(b.offset, BLOCK_SIZE);
    // A piece B lacks cannot be continued by B.
    add(&mut s, C, bits(8, &[(a.piece.get() + 1) % 8]));
    assert_ne!(s.next_request(C, T0).unwrap().piece, a.piece);
}

#[test]
fn the_per_peer_limit_holds_and_a_delivery_frees_a_slot() {
    let mut s = new_scheduler(4, 3, 0);
    add(&mut s, A, Bitfield::full(4));
    let blocks = fill(&mut s, A, T0);
    assert_eq!(blocks.len(), 3);
    assert_eq!(s.in_flight(A), 3);
    assert_eq!(deliver(&mut s, A, &blocks[..1]), BlockOutcome::Stored);
    assert_eq!(fill(&mut s, A, T0).len(), 1);
}

#[test]
fn a_completed_piece_awaits_its_hash_then_counts() {
    let lengths = Lengths::new(u64::from(PIECE_SIZE) + 5).unwrap();
    let mut s = Scheduler::new(lengths, Bitfield::new(2), config(100), 0).unwrap();
    add(&mut s, A, Bitfield::full(2));
    let blocks = fill(&mut s, A, T0);
    assert_eq!(blocks.len() as u32, BLOCKS_PER_PIECE + 1);
    let short = *blocks.iter().find(|b| b.piece.get() == 1).unwrap();
    assert_eq!(short.length, 5);
    assert_eq!(
        deliver(&mut s, A, &[short]),
        BlockOutcome::PieceComplete(short.piece)
    );
    assert_eq!(s.piece_state(short.piece), PieceState::AwaitingHash);
    assert_eq!(s.handle_block_received(A, short), BlockOutcome::Duplicate);
    s.handle_hash_ok(short.piece).unwrap();
    assert_eq!(s.handle_block_received(A, short), BlockOutcome::Duplicate);
    assert_eq!((s.pieces_have(), s.bytes_have()), (1, 5));
    assert!(s.have().get(short.piece));
    assert!(!s.is_complete());
    let rest: Vec<BlockRef> = blocks.into_iter().filter(|b| b.piece.get() == 0).collect();
    let (last, first) = rest.split_last().unwrap();
    assert_eq!(deliver(&mut s, A, first), BlockOutcome::Stored);
    assert_eq!(
        deliver(&mut s, A, &[*last]),
        BlockOutcome::PieceComplete(last.piece)
    );
    assert!(!s.is_complete(), "complete only once verified");
    s.handle_hash_ok(last.piece).unwrap();
    assert!(s.is_complete());
    assert!(!s.is_interesting(A));
    assert_eq!(s.bytes_have(), lengths.total());
    s.check_invariants();
}

#[test]
fn hash_results_for_pieces_not_awaiting_them_are_refused() {
    let mut s = new_scheduler(2, 1, 0);
    add(&mut s, A, Bitfield::full(2));
    let block = s.next_request(A, T0).unwrap();
    let expected = Err(SchedulerError::PieceNotAwaitingHash(block.piece.get()));
    assert_eq!(s.handle_hash_ok(block.piece), expected);
    assert_eq!(s.handle_hash_failed(block.piece), expected);
    s.check_invariants();
}

#[test]
fn unrequested_blocks_are_reported() {
    let mut s = new_scheduler(2, 1, 0);
    add(&mut s, A, Bitfield::full(2));
    add(&mut s, B, Bitfield::full(2));
    let block = s.next_request(A, T0).unwrap();
    assert_eq!(s.handle_block_received(B, block), BlockOutcome::Unrequested);
    let other = s.lengths().block(block.piece, 1).unwrap();
    assert_eq!(s.handle_block_received(A, other), BlockOutcome::Unrequested);
    assert_eq!(
        s.handle_block_received(PeerKey(99), block),
        BlockOutcome::Unrequested
    );
    s.check_invariants();
}

#[test]
fn a_failed_piece_from_several_peers_puts_them_on_parole_without_strikes() {
    // Half a piece's blocks per peer: A and B each get half of the piece.
    let mut s = new_scheduler(3, BLOCKS_PER_PIECE / 2, 0);
    add(&mut s, A, Bitfield::full(3));
    add(&mut s, B, Bitfield::full(3));
    let (a, b) = (fill(&mut s, A, T0), fill(&mut s, B, T0));
    assert_eq!(a[0].piece, b[0].piece, "both work on the same piece");
    let _ = deliver(&mut s, A, &a);
    let p = a[0].piece;
    assert_eq!(deliver(&mut s, B, &b), BlockOutcome::PieceComplete(p));
    s.handle_hash_failed(p).unwrap();
    s.check_invariants();
    assert_eq!(s.piece_state(p), PieceState::Queued);
    assert_eq!(
        (s.strikes(A), s.strikes(B)),
        (0, 0),
        "the culprit is unknown"
    );
    assert!(s.is_on_parole(A) && s.is_on_parole(B));
    assert_eq!(events(&mut s), []);
    // On parole, each downloads a piece of its own: no piece is shared between them.
    let (a, b) = (fill(&mut s, A, T0), fill(&mut s, B, T0));
    let pieces_of = |blocks: &[BlockRef]| -> BTreeSet<u32> {
        blocks.iter().map(|block| block.piece.get()).collect()
    };
    assert!(!a.is_empty() && !b.is_empty());
    assert!(pieces_of(&a).is_disjoint(&pieces_of(&b)), "{a:?} {b:?}");
}

#[test]
fn a_peer_on_parole_is_cleared_by_a_good_piece_of_its_own() {
    let mut s = new_scheduler(3, BLOCKS_PER_PIECE / 2, 0);
    add(&mut s, A, Bitfield::full(3));
    add(&mut s, B, Bitfield::full(3));
    let (a, b) = (fill(&mut s, A, T0), fill(&mut s, B, T0));
    let _ = deliver(&mut s, A, &a);
    let failed = a[0].piece;
    assert_eq!(deliver(&mut s, B, &b), BlockOutcome::PieceComplete(failed));
    s.handle_hash_failed(failed).unwrap();
    s.handle_peer_removed(B);
    // A downloads a whole piece alone, in two rounds of four requests.
    let first = fill(&mut s, A, T0);
    assert_eq!(deliver(&mut s, A, &first), BlockOutcome::Stored);
    assert!(s.is_on_parole(A));
    let second = fill(&mut s, A, T0);
    let p = first[0].piece;
    assert!(first.iter().chain(&second).all(|block| block.piece == p));
    assert_eq!(deliver(&mut s, A, &second), BlockOutcome::PieceComplete(p));
    s.handle_hash_ok(p).unwrap();
    s.check_invariants();
    assert!(!s.is_on_parole(A));
    assert_eq!(s.strikes(A), 0);
}

#[test]
fn a_peer_whose_own_pieces_fail_is_struck_then_banned() {
    let mut s = new_scheduler(1, BLOCKS_PER_PIECE, 0);
    add(&mut s, A, Bitfield::full(1));
    for strike in 1..=2 {
        let a = fill(&mut s, A, T0);
        let p = piece(&s, 0);
        assert_eq!(deliver(&mut s, A, &a), BlockOutcome::PieceComplete(p));
        s.handle_hash_failed(p).unwrap();
        s.check_invariants();
        assert_eq!(s.piece_state(p), PieceState::Queued);
        if strike == 1 {
            assert_eq!(s.strikes(A), 1);
            assert_eq!(events(&mut s), []);
        }
    }
    assert_eq!(events(&mut s), [Event::Ban { peer: A }]);
    assert!(s.is_banned(A));
    assert_eq!(s.availability(piece(&s, 0)), 0);
    assert_eq!(
        s.handle_peer_added(A, Bitfield::full(1)),
        Err(SchedulerError::PeerBanned(A))
    );
}

#[test]
fn a_removed_peer_releases_its_blocks() {
    let mut s = new_scheduler(3, 5, 0);
    add(&mut s, A, Bitfield::full(3));
    let a = fill(&mut s, A, T0);
    // One block received keeps the piece partial.
    assert_eq!(deliver(&mut s, A, &a[..1]), BlockOutcome::Stored);
    s.handle_peer_removed(A);
    s.check_invariants();
    assert_eq!(s.in_flight(A), 0);
    assert_eq!(s.availability(piece(&s, 0)), 0);
    add(&mut s, B, Bitfield::full(3));
    let b = fill(&mut s, B, T0);
    assert_eq!(
        a[1..],
        b[..4],
        "B gets A's blocks back, partial piece first"
    );
    assert_eq!(s.handle_block_received(A, a[1]), BlockOutcome::Unrequested);
}

#[test]
fn a_rejecting_peer_is_not_asked_for_that_piece_again() {
    let mut s = new_scheduler(2, 1, 0);
    add(&mut s, A, Bitfield::full(2));
    let block = s.next_request(A, T0).unwrap();
    s.handle_request_rejected(A, block);
    s.check_invariants();
    assert_eq!(s.in_flight(A), 0);
    assert_eq!(s.availability(block.piece), 0);
    let next = s.next_request(A, T0).unwrap();
    assert_ne!(next.piece, block.piece);
    add(&mut s, B, bits(2, &[block.piece.get()]));
    assert_eq!(
        s.next_request(B, T0),
        Some(block),
        "B takes the rejected block"
    );
    // Announcing the piece again makes A eligible again.
    s.handle_have(A, block.piece);
    assert_eq!(s.availability(block.piece), 2);
    s.check_invariants();
}

#[test]
fn a_timed_out_request_is_cancelled_reassigned_and_snubs_the_peer() {
    // A's requests fill one piece.
    let mut s = new_scheduler(4, BLOCKS_PER_PIECE, 0);
    let timeout = s.config().request_timeout;
    add(&mut s, A, Bitfield::full(4));
    let t1 = Duration::from_secs(1);
    let a = fill(&mut s, A, t1);
    assert_eq!(s.poll_timeout(), Some(t1 + timeout));
    // One block arrives, so the piece stays partial after the others time out.
    assert_eq!(deliver(&mut s, A, &a[..1]), BlockOutcome::Stored);
    let a = &a[1..];
    s.handle_timeout(t1 + timeout - Duration::from_nanos(1));
    assert_eq!(events(&mut s), []);
    s.handle_timeout(t1 + timeout);
    s.check_invariants();
    let cancelled: Vec<BlockRef> = events(&mut s)
        .into_iter()
        .map(|e| match e {
            Event::Cancel { peer, block } if peer == A => block,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(cancelled, a);
    assert_eq!(s.timeouts(A) as usize, a.len());
    assert_eq!(s.poll_timeout(), None);
    add(&mut s, B, Bitfield::full(4));
    let b = fill(&mut s, B, t1 + timeout);
    assert_eq!(b[..a.len()], *a, "B gets them back, partial piece first");
    assert_eq!(
        fill(&mut s, A, t1 + timeout).len(),
        1,
        "snubbed: one at a time"
    );
    // A late answer to a cancelled request is not taken.
    assert_eq!(s.handle_block_received(A, a[0]), BlockOutcome::Unrequested);
}

#[test]
fn endgame_duplicates_boundedly_and_cancels_on_arrival() {
    let mut s = new_scheduler(1, 100, 0);
    add(&mut s, A, Bitfield::full(1));
    add(&mut s, B, Bitfield::full(1));
    add(&mut s, C, Bitfield::full(1));
    let a = fill(&mut s, A, T0);
    assert_eq!(a.len() as u32, BLOCKS_PER_PIECE);
    assert!(s.in_endgame());
    let b = fill(&mut s, B, T0);
    assert_eq!(b.iter().collect::<BTreeSet<_>>(), a.iter().collect());
    assert_eq!(fill(&mut s, C, T0), [], "two requests per block at most");
    assert_eq!(deliver(&mut s, B, &b[..1]), BlockOutcome::Stored);
    assert_eq!(
        events(&mut s),
        [Event::Cancel {
            peer: A,
            block: b[0]
        }]
    );
    assert_eq!(s.in_flight(A) as u32, BLOCKS_PER_PIECE - 1);
    assert_eq!(s.handle_block_received(A, b[0]), BlockOutcome::Duplicate);
    assert_eq!(fill(&mut s, C, T0), [], "the rest is still requested twice");
    // Once A leaves, C may duplicate B's remaining requests, but not the received block.
    s.handle_peer_removed(A);
    let c = fill(&mut s, C, T0);
    assert_eq!(c.iter().collect::<BTreeSet<_>>(), b[1..].iter().collect());
}

#[test]
fn no_endgame_while_unrequested_blocks_are_available() {
    let mut s = new_scheduler(2, 100, 0);
    add(&mut s, A, bits(2, &[0]));
    let _ = fill(&mut s, A, T0);
    add(&mut s, B, Bitfield::full(2));
    assert!(!s.in_endgame(), "piece 1 is untouched and B has it");
    let b = fill(&mut s, B, T0);
    let (fresh, duplicates) = b.split_at(BLOCKS_PER_PIECE as usize);
    assert!(fresh.iter().all(|block| block.piece.get() == 1));
    assert!(s.in_endgame());
    assert_eq!(duplicates.len() as u32, BLOCKS_PER_PIECE);
    assert!(duplicates.iter().all(|block| block.piece.get() == 0));
}

#[test]
fn pieces_not_wanted_are_never_requested() {
    let lengths = lengths_of(4);
    let wanted = bits(4, &[1, 2]);
    let mut s = Scheduler::with_wanted(lengths, bits(4, &[2]), &wanted, config(100), 0).unwrap();
    assert_eq!(s.piece_state(piece(&s, 0)), PieceState::NotNeeded);
    add(&mut s, A, Bitfield::full(4));
    let blocks = fill(&mut s, A, T0);
    assert!(blocks.iter().all(|b| b.piece.get() == 1));
    let last = deliver(&mut s, A, &blocks);
    assert_eq!(last, BlockOutcome::PieceComplete(piece(&s, 1)));
    s.handle_hash_ok(piece(&s, 1)).unwrap();
    assert!(s.is_complete());
    assert!(!s.is_interesting(A), "A only has pieces we do not want");
}

#[test]
fn a_peer_with_few_pieces_among_many_still_finds_them() {
    // 20,000 pieces: the rarest-first scan gives up after 312 probes and the bitfield walk
    // must find the one piece.
    let n = 20_000;
    let mut s = new_scheduler(n, 1, 9);
    add(&mut s, A, Bitfield::full(n));
    add(&mut s, B, bits(n, &[n - 7]));
    assert_eq!(s.next_request(B, T0).unwrap().piece.get(), n - 7);
}

#[test]
fn a_rare_piece_announced_later_is_picked_next() {
    let mut s = new_scheduler(4, BLOCKS_PER_PIECE, 0);
    s.handle_peer_added(A, Bitfield::full(4)).unwrap();
    s.handle_peer_added(B, bits(4, &[0, 1, 2])).unwrap();
    add(&mut s, C, bits(4, &[0, 1, 2]));
    // Pieces 0, 1, 2 are held by three peers, piece 3 by one, which C lacks.
    let first = fill(&mut s, C, T0);
    let started = first[0].piece;
    assert_eq!(s.availability(started), 3);
    let last = deliver(&mut s, C, &first);
    assert_eq!(last, BlockOutcome::PieceComplete(started));
    s.handle_hash_ok(started).unwrap();
    s.handle_have(C, piece(&s, 3));
    assert_eq!(s.next_request(C, T0).unwrap().piece.get(), 3);
}
