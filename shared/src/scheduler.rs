//! The sans-IO download scheduler.
