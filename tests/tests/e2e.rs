//! End-to-end tests: one test binary made of topic modules. Each starts real processes
//! (trackers, peers) on 127.0.0.1 with OS-chosen ports, or, in `network`, on hosts of a
//! network made of namespaces for the test, and kills them when it ends.

mod browser;
mod catalog;
mod cli;
mod hostile;
mod library;
mod network;
mod peer;
mod tls;
mod tracker;
