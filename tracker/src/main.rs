//! The mtorrent tracker.

fn main() {}
