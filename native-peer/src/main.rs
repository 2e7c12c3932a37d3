//! The mtorrent command-line peer.

fn main() {}
