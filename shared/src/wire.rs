//! Peer-wire messages and their binary codec.
