//! Random swarms of cores wired together in memory: peers join, leave and lie, and every
//! honest peer must always end up with the whole file, within a bounded number of rounds.

use proptest::prelude::*;

use super::net::{file, Net};
use super::*;
use crate::PIECE_SIZE;

/// Something that happens to the swarm at a given round.
#[derive(Debug, Clone)]
enum Action {
    /// A new peer joins, with some pieces already, and connects to everyone.
    Join { have: Vec<bool>, zero_copy: bool },
    /// A peer that is neither the first seeder nor a liar leaves (picked modulo the count).
    Leave(usize),
}

fn action(pieces: usize) -> impl Strategy<Value = Action> {
    prop_oneof![
        (
            proptest::collection::vec(any::<bool>(), pieces),
            any::<bool>()
        )
            .prop_map(|(have, zero_copy)| Action::Join { have, zero_copy }),
        any::<usize>().prop_map(Action::Leave),
    ]
}

fn bitfield(bools: &[bool]) -> Bitfield {
    let mut bitfield = Bitfield::new(bools.len() as u32);
    for (piece, _) in bools.iter().enumerate().filter(|(_, &b)| b) {
        bitfield.set_bit(piece as u32);
    }
    bitfield
}

#[derive(Debug, Clone)]
struct Scenario {
    pieces: u32,
    last: u32,
    leechers: Vec<bool>,
    liars: usize,
    /// (round, action)
    actions: Vec<(usize, Action)>,
    max_in_flight: u32,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (1u32..=5, 1u32..=PIECE_SIZE).prop_flat_map(|(pieces, last)| {
        (
            proptest::collection::vec(any::<bool>(), 1..=3),
            0usize..=2,
            proptest::collection::vec((0usize..300, action(pieces as usize)), 0..6),
            1u32..=8,
        )
            .prop_map(move |(leechers, liars, mut actions, max_in_flight)| {
                actions.sort_by_key(|(round, _)| *round);
                Scenario {
                    pieces,
                    last,
                    leechers,
                    liars,
                    actions,
                    max_in_flight,
                }
            })
    })
}

fn run(s: &Scenario) -> Net {
    let size = (s.pieces as usize - 1) * PIECE_SIZE as usize + s.last as usize;
    let mut config = SwarmConfig::default();
    config.scheduler.max_in_flight_per_peer = s.max_in_flight;
    config.scheduler.request_timeout = Duration::from_secs(5);
    let mut net = Net::new(file(size, s.pieces as u8), config);
    let full = Bitfield::full(s.pieces);
    let seeder = net.add_node(full.clone(), false, false);
    let mut liars = Vec::new();
    for _ in 0..s.liars {
        let liar = net.add_node(full.clone(), true, false);
        net.connect_to_all(liar);
        liars.push(liar);
    }
    for &zero_copy in &s.leechers {
        let leecher = net.add_node(Bitfield::new(s.pieces), false, zero_copy);
        net.connect_to_all(leecher);
    }
    let mut round = 0;
    for (at, action) in &s.actions {
        while round < *at {
            net.step();
            round += 1;
        }
        match action {
            Action::Join { have, zero_copy } => {
                let node = net.add_node(bitfield(have), false, *zero_copy);
                net.connect_to_all(node);
            }
            Action::Leave(pick) => {
                let candidates: Vec<usize> = (0..net.nodes.len())
                    .filter(|&n| n != seeder && !liars.contains(&n) && !net.nodes[n].gone)
                    .collect();
                if !candidates.is_empty() {
                    net.remove_node(candidates[pick % candidates.len()]);
                }
            }
        }
    }
    // Liars get banned after a few strikes and requests time out after 5 s (50 rounds): a
    // few thousand rounds are ample for five pieces.
    net.drive_bounded(5_000);
    net
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn honest_peers_always_finish(s in scenario()) {
        let net = run(&s);
        for node in net.nodes.iter().filter(|n| !n.gone && !n.liar) {
            prop_assert!(node.swarm.is_complete());
            prop_assert_eq!(&node.data, &net.truth);
            let stats = node.swarm.stats();
            prop_assert_eq!(stats.pieces, s.pieces);
            prop_assert_eq!(stats.bytes, net.truth.len() as u64);
            prop_assert_eq!(node.swarm.pieces_verifying(), 0);
        }
    }
}
