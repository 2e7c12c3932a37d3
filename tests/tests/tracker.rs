//! The tracker pair: registry, replication, persistence, faults.
