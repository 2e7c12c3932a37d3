//! A progress bar on stderr while a long job runs, only when stderr is a terminal.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Runs `job`, which counts its progress in the counter it is given, with a bar labelled
/// `label` that goes from 0 to `total` bytes.
pub fn with_progress<T>(label: &str, total: u64, job: impl FnOnce(&AtomicU64) -> T) -> T {
    let counter = AtomicU64::new(0);
    if !std::io::stderr().is_terminal() || total == 0 {
        return job(&counter);
    }
    let bar = ProgressBar::new(total).with_message(label.to_owned());
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {percent:>3}% {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let done = AtomicBool::new(false);
    let result = thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                bar.set_position(counter.load(Ordering::Relaxed));
                thread::sleep(Duration::from_millis(100));
            }
        });
        let result = job(&counter);
        done.store(true, Ordering::Relaxed);
        result
    });
    bar.finish_and_clear();
    result
}
