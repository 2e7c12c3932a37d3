//! The mtorrent browser peer.
