#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mtorrent_shared::fuzzing::tracker_message(data));
