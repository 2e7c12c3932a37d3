//! The native peer's building blocks, used by the `mtorrent` command: hashing local files on
//! every core, the persistent catalog of shared and downloading files, and positioned piece
//! storage.
#![warn(missing_docs)]

pub mod catalog;
pub mod config;
pub mod hashing;
pub mod locks;
pub mod node;
pub mod sha1_x2;
pub mod storage;
