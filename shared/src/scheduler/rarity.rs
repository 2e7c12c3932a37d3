//! The queue of pieces nobody has started, ordered rarest first.
//!
//! The layout is libtorrent's piece picker: one array holds the queued pieces sorted by
//! availability (how many connected peers have them), so that pieces of equal availability form
//! a contiguous *bucket*, and `end[a]` marks where bucket `a` stops. A piece's availability moves
//! by one when a peer announces or loses it; the piece then only has to swap with the first or
//! last member of its bucket and move the boundary, which is O(1). Joining or leaving the queue
//! shifts one member per bucket above the piece's, which is O(number of buckets) and the number
//! of buckets is at most the number of peers plus one.
//!
//! Each time a piece lands in a bucket it swaps with a random member of that bucket, so the
//! order within a bucket is a random permutation: scanning from the rarest bucket breaks ties at
//! random, as BitTorrent's rarest-first wants, without sorting anything.
//!
//! In real swarms availability is correlated: the rarest pieces are rare because most peers
//! lack them, so a scan from the rarest bucket can meet thousands of pieces the asking peer
//! lacks before one it has. Each peer therefore keeps a [`Floor`]: the lowest availability at
//! which it can have a queued piece. Scans start at the floor's bucket. The floor stays valid
//! until a queued piece lands in a lower bucket by a decrement or an insertion, which the
//! index records per bucket with an epoch (`lowered_at`), so checking a floor costs
//! O(buckets) and no peer has to be visited when availability drops.

use super::rng::SplitMix64;
use crate::bitfield::Bitfield;

/// Marks a piece that is not in the queue.
const ABSENT: u32 = u32::MAX;

/// Availability of every piece, and the queued pieces ordered by it.
#[derive(Debug, Clone)]
pub(super) struct Rarity {
    /// Per piece: how many connected peers have it, queued or not.
    availability: Vec<u32>,
    /// The queued pieces, in non-decreasing order of availability.
    order: Vec<u32>,
    /// Per piece: its index in `order`, or [`ABSENT`].
    position: Vec<u32>,
    /// `end[a]`: one past the last index of bucket `a` in `order`. Non-decreasing; its last
    /// entry is `order.len()`. Bucket `a` starts at `end[a - 1]`, or 0.
    end: Vec<u32>,
    /// The queued pieces as a bitfield, to intersect with a peer's quickly.
    members: Bitfield,
    /// Counts the events that can lower a floor.
    epoch: u64,
    /// Per bucket: the epoch at which a queued piece last entered it from above or from
    /// outside the queue.
    lowered_at: Vec<u64>,
}

/// A lower bound on the availability of the queued pieces one peer has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Floor {
    /// As of `epoch`, the peer had no queued piece of availability below `level`.
    level: u32,
    epoch: u64,
}

impl Rarity {
    /// An empty queue for `piece_count` pieces, each of availability 0.
    pub(super) fn new(piece_count: u32) -> Self {
        Self {
            availability: vec![0; piece_count as usize],
            order: Vec::new(),
            position: vec![ABSENT; piece_count as usize],
            end: vec![0],
            members: Bitfield::new(piece_count),
            epoch: 0,
            lowered_at: vec![0],
        }
    }

    pub(super) fn availability(&self, piece: u32) -> u32 {
        self.availability[piece as usize]
    }

    pub(super) fn contains(&self, piece: u32) -> bool {
        self.position[piece as usize] != ABSENT
    }

    /// Whether some queued piece is available from at least one peer.
    pub(super) fn has_available(&self) -> bool {
        self.order.len() as u32 > self.end[0]
    }

    /// The queued pieces that some peer has, rarest first, ties in random order.
    #[cfg(test)]
    pub(super) fn rarest_available(&self) -> impl Iterator<Item = u32> + '_ {
        self.order[self.end[0] as usize..].iter().copied()
    }

    /// Puts `piece` into the queue, at a random place among the pieces of its availability.
    pub(super) fn insert(&mut self, piece: u32, rng: &mut SplitMix64) {
        debug_assert!(!self.contains(piece));
        let level = self.availability(piece) as usize;
        self.grow(level);
        // Open a hole at the very end, then walk it down to the end of bucket `level` by moving
        // the first member of every higher bucket to that bucket's end.
        let mut hole = self.order.len() as u32;
        self.order.push(piece);
        for b in (level + 1..self.end.len()).rev() {
            let first = self.end[b - 1];
            if first != hole {
                self.put(self.order[first as usize], hole);
            }
            self.end[b] += 1;
            hole = first;
        }
        self.put(piece, hole);
        self.end[level] += 1;
        self.members.set_bit(piece);
        self.lowered(level);
        self.shuffle_in(piece, rng);
    }

    /// Takes `piece` out of the queue.
    pub(super) fn remove(&mut self, piece: u32) {
        debug_assert!(self.contains(piece));
        let level = self.availability(piece) as usize;
        // Swap it to the end of its bucket, then walk that hole up to the end of the array by
        // moving the last member of every higher bucket into it.
        let mut hole = self.end[level] - 1;
        self.swap(self.position[piece as usize], hole);
        self.end[level] -= 1;
        for b in level + 1..self.end.len() {
            let last = self.end[b] - 1;
            if last != hole {
                self.put(self.order[last as usize], hole);
            }
            self.end[b] -= 1;
            hole = last;
        }
        debug_assert_eq!(hole as usize, self.order.len() - 1);
        self.order.pop();
        self.position[piece as usize] = ABSENT;
        self.members.clear_bit(piece);
    }

    /// One more peer has `piece`.
    pub(super) fn increment(&mut self, piece: u32, rng: &mut SplitMix64) {
        let level = self.availability(piece) as usize;
        self.availability[piece as usize] += 1;
        if !self.contains(piece) {
            return;
        }
        self.grow(level + 1);
        // The last member of bucket `level` becomes the first of bucket `level + 1`.
        let last = self.end[level] - 1;
        self.swap(self.position[piece as usize], last);
        self.end[level] -= 1;
        self.shuffle_in(piece, rng);
    }

    /// One peer fewer has `piece`.
    pub(super) fn decrement(&mut self, piece: u32, rng: &mut SplitMix64) {
        let level = self.availability(piece) as usize;
        debug_assert!(level > 0, "availability of piece {piece} below zero");
        self.availability[piece as usize] -= 1;
        if !self.contains(piece) {
            return;
        }
        // The first member of bucket `level` becomes the last of bucket `level - 1`.
        let first = self.end[level - 1];
        self.swap(self.position[piece as usize], first);
        self.end[level - 1] += 1;
        self.lowered(level - 1);
        self.shuffle_in(piece, rng);
    }

    /// Lowers `floor` if `piece`, which its peer just announced, is queued below it.
    pub(super) fn announced(&self, floor: &mut Floor, piece: u32) {
        if self.contains(piece) {
            floor.level = floor.level.min(self.availability(piece));
        }
    }

    /// The rarest queued piece that `has` holds, ties broken at random, or `None`. `floor` is
    /// that peer's, and is raised to what the search learns.
    ///
    /// Scans at most `budget` pieces from the floor's bucket up, which finds one at once when
    /// the peer has a fair share of those buckets. Failing that, it walks the intersection of
    /// the peer's bitfield with the queue, O(pieces / 64 + pieces in both), and sets the floor
    /// so that the next searches start where this one ended.
    pub(super) fn pick(
        &self,
        has: &Bitfield,
        floor: &mut Floor,
        budget: usize,
        rng: &mut SplitMix64,
    ) -> Option<u32> {
        let level = self.valid_level(floor).max(1) as usize;
        let start = self
            .end
            .get(level - 1)
            .map_or(self.order.len(), |&e| e as usize);
        let found = self.order[start..]
            .iter()
            .take(budget)
            .copied()
            .find(|&piece| has.bit(piece))
            .or_else(|| self.rarest_in_both(has, rng));
        *floor = Floor {
            // Nothing was found below the result: it is the rarest.
            level: found.map_or(u32::MAX, |piece| self.availability(piece)),
            epoch: self.epoch,
        };
        found
    }

    /// The floor's level if still valid, else the lowest bucket that may hold a piece below it.
    pub(super) fn valid_level(&self, floor: &Floor) -> u32 {
        let levels = (floor.level as usize).min(self.lowered_at.len());
        (0..levels)
            .find(|&level| self.lowered_at[level] > floor.epoch)
            .map_or(floor.level, |level| level as u32)
    }

    /// The rarest queued piece in `has`, ties broken at random by reservoir sampling.
    fn rarest_in_both(&self, has: &Bitfield, rng: &mut SplitMix64) -> Option<u32> {
        let mut best = None;
        let mut ties = 0;
        for piece in has.iter_ones_in_both(&self.members) {
            let availability = self.availability(piece);
            match best {
                // Only possible when `has` is not a connected peer's bitfield.
                _ if availability == 0 => {}
                Some((_, a)) if a < availability => {}
                Some((_, a)) if a == availability => {
                    // Each of the `ties` equals wins with probability 1/ties.
                    ties += 1;
                    if rng.below(ties) == 0 {
                        best = Some((piece, availability));
                    }
                }
                _ => {
                    best = Some((piece, availability));
                    ties = 1;
                }
            }
        }
        best.map(|(piece, _)| piece)
    }

    /// Records that a queued piece entered bucket `level` from above or from outside.
    fn lowered(&mut self, level: usize) {
        self.epoch += 1;
        if self.lowered_at.len() <= level {
            self.lowered_at.resize(level + 1, 0);
        }
        self.lowered_at[level] = self.epoch;
    }

    /// Makes sure bucket `level` exists.
    fn grow(&mut self, level: usize) {
        while self.end.len() <= level {
            self.end.push(self.order.len() as u32);
        }
    }

    /// Swaps `piece` with a random member of its own bucket.
    fn shuffle_in(&mut self, piece: u32, rng: &mut SplitMix64) {
        let level = self.availability(piece) as usize;
        let start = if level == 0 { 0 } else { self.end[level - 1] };
        let target = start + rng.below(self.end[level] - start);
        self.swap(self.position[piece as usize], target);
    }

    fn put(&mut self, piece: u32, index: u32) {
        self.order[index as usize] = piece;
        self.position[piece as usize] = index;
    }

    fn swap(&mut self, i: u32, j: u32) {
        self.order.swap(i as usize, j as usize);
        self.position[self.order[i as usize] as usize] = i;
        self.position[self.order[j as usize] as usize] = j;
    }

    /// Panics unless the layout matches the definitions above.
    #[cfg(test)]
    pub(super) fn check(&self) {
        assert_eq!(*self.end.last().unwrap() as usize, self.order.len());
        assert!(self.end.windows(2).all(|w| w[0] <= w[1]));
        let mut start = 0;
        for (level, &end) in self.end.iter().enumerate() {
            for i in start..end {
                let piece = self.order[i as usize];
                assert_eq!(self.availability(piece) as usize, level, "piece {piece}");
                assert_eq!(self.position[piece as usize], i);
            }
            start = end;
        }
        let queued = self.position.iter().filter(|&&p| p != ABSENT).count();
        assert_eq!(queued, self.order.len());
        assert_eq!(self.members.count_ones() as usize, queued);
        assert!(self.members.iter_ones().all(|piece| self.contains(piece)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u32),
        Remove(u32),
        Increment(u32),
        Decrement(u32),
    }

    fn op(pieces: u32) -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..pieces).prop_map(Op::Insert),
            (0..pieces).prop_map(Op::Remove),
            (0..pieces).prop_map(Op::Increment),
            (0..pieces).prop_map(Op::Decrement),
        ]
    }

    #[test]
    fn rarest_first_over_buckets() {
        let mut rng = SplitMix64::new(1);
        let mut rarity = Rarity::new(6);
        for piece in 0..6 {
            rarity.insert(piece, &mut rng);
        }
        for (piece, times) in [(0, 3), (1, 1), (2, 2), (3, 1), (4, 0), (5, 2)] {
            for _ in 0..times {
                rarity.increment(piece, &mut rng);
            }
        }
        rarity.check();
        let order: Vec<u32> = rarity.rarest_available().collect();
        let availabilities: Vec<u32> = order.iter().map(|&p| rarity.availability(p)).collect();
        assert_eq!(availabilities, [1, 1, 2, 2, 3], "{order:?}");
        assert!(!order.contains(&4), "nobody has piece 4");
    }

    #[test]
    fn ties_are_broken_differently_by_different_seeds() {
        let firsts: std::collections::BTreeSet<u32> = (0..40)
            .map(|seed| {
                let mut rng = SplitMix64::new(seed);
                let mut rarity = Rarity::new(10);
                for piece in 0..10 {
                    rarity.insert(piece, &mut rng);
                    rarity.increment(piece, &mut rng);
                }
                let mut floor = Floor::default();
                rarity
                    .pick(&Bitfield::full(10), &mut floor, 64, &mut rng)
                    .unwrap()
            })
            .collect();
        assert!(firsts.len() > 5, "{firsts:?}");
    }

    proptest! {
        /// Any sequence of operations keeps the layout consistent with a plain model, and
        /// `pick` returns a queued piece of the peer's of minimal availability, by both paths.
        #[test]
        fn matches_a_model(
            ops in proptest::collection::vec(op(24), 0..200),
            has in proptest::collection::vec(any::<bool>(), 24),
            seed in any::<u64>(),
        ) {
            let mut rng = SplitMix64::new(seed);
            let mut rarity = Rarity::new(24);
            let mut queued = [false; 24];
            let mut availability = [0u32; 24];
            // The asking peer's own pieces: it counts towards their availability, which thus
            // never drops below 1, as in the scheduler.
            let mut bits = Bitfield::new(24);
            for (p, _) in has.iter().enumerate().filter(|(_, &h)| h) {
                bits.set_bit(p as u32);
                rarity.increment(p as u32, &mut rng);
                availability[p] += 1;
            }
            let mut floor = Floor::default();
            for (step, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Insert(p) if !queued[p as usize] => {
                        rarity.insert(p, &mut rng);
                        queued[p as usize] = true;
                    }
                    Op::Remove(p) if queued[p as usize] => {
                        rarity.remove(p);
                        queued[p as usize] = false;
                    }
                    Op::Increment(p) => {
                        rarity.increment(p, &mut rng);
                        availability[p as usize] += 1;
                    }
                    Op::Decrement(p) if availability[p as usize] > u32::from(has[p as usize]) => {
                        rarity.decrement(p, &mut rng);
                        availability[p as usize] -= 1;
                    }
                    _ => {}
                }
                rarity.check();
                let best = (0..24)
                    .filter(|&p| queued[p] && has[p])
                    .map(|p| availability[p])
                    .min();
                // Alternate budgets so that both paths run, with the floor carried over.
                let budget = [0, 1, 64][step % 3];
                let picked = rarity.pick(&bits, &mut floor, budget, &mut rng);
                match best {
                    None => prop_assert_eq!(picked, None),
                    Some(min) => {
                        let p = picked.unwrap() as usize;
                        prop_assert!(queued[p] && has[p]);
                        prop_assert_eq!(availability[p], min, "step {}", step);
                    }
                }
            }
            for p in 0..24u32 {
                prop_assert_eq!(rarity.contains(p), queued[p as usize]);
                prop_assert_eq!(rarity.availability(p), availability[p as usize]);
            }
        }
    }
}
