//! Running the system's network tools (`ip`, `nft`) for a [`super::Network`]: found in the
//! `sbin` directories too, each run bounded in time, failures returned with the tool's stderr.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one run of a tool may take.
const TOOL_TIMEOUT: Duration = Duration::from_secs(10);

/// The path of system tool `name`: on `PATH`, or in the `sbin` and `bin` directories, which a
/// test's `PATH` may lack; `name` itself if it is nowhere.
pub fn path(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Runs tool `name` with `args`, `stdin` written to its standard input; its stdout if it exits
/// 0, else what went wrong. A run still going after [`TOOL_TIMEOUT`] is killed.
pub fn run(name: &str, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let description = format!("{name} {}", args.join(" "));
    let mut child = Command::new(path(name))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{description}: cannot start: {e}"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // Dropping the pipe afterwards closes the tool's input.
        pipe.write_all(text.as_bytes())
            .map_err(|e| format!("{description}: cannot write its input: {e}"))?;
    }
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + TOOL_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{description}: still ran after {TOOL_TIMEOUT:?}"));
            }
            Err(e) => return Err(format!("{description}: cannot wait for it: {e}")),
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if status.success() {
        Ok(stdout)
    } else {
        Err(format!("{description}: {status}: {}", stderr.trim()))
    }
}

/// [`run`] of `ip`, panicking on failure: for steps that a working network never fails.
pub fn ip(args: &[&str]) -> String {
    run("ip", args, None).unwrap_or_else(|e| panic!("{e}"))
}
