//! Benchmarks that compare mtorrent with standard tools on this machine; one binary each.
