//! Tracker messages: peer ⇄ tracker and tracker ⇄ tracker, and their codec.
