//! The `mtorrent` command: create, inspect, verify.
