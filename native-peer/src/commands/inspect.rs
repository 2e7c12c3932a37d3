//! `mtorrent inspect`: print a `.mtorrent`'s fields.

use std::process::ExitCode;

use anyhow::Result;
use mtorrent_shared::PIECE_SIZE;

use super::human_bytes;
use crate::cli::InspectArgs;
use crate::output::read_metainfo;

pub fn run(args: InspectArgs) -> Result<ExitCode> {
    let meta = read_metainfo(&args.mtorrent)?;
    if args.json {
        let summary = serde_json::json!({
            "name": meta.name(),
            "size": meta.size(),
            "piece_size": PIECE_SIZE,
            "pieces": meta.lengths().piece_count(),
            "info_hash": meta.info_hash(),
            "trackers": meta.trackers(),
        });
        println!("{summary}");
        return Ok(ExitCode::SUCCESS);
    }
    let rows = [
        ("name", meta.name().to_owned()),
        ("size", human_bytes(meta.size())),
        ("piece size", human_bytes(u64::from(PIECE_SIZE))),
        ("pieces", meta.lengths().piece_count().to_string()),
        ("info hash", meta.info_hash().to_hex()),
        ("tracker 1", meta.trackers()[0].clone()),
        ("tracker 2", meta.trackers()[1].clone()),
    ];
    for (label, value) in rows {
        println!("{:<12}{value}", format!("{label}:"));
    }
    Ok(ExitCode::SUCCESS)
}
