//! mtorrent benchmarks.

fn main() {}
