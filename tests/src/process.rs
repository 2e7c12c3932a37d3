//! Long-running processes under test: started with their output captured, asked for the
//! address they print once listening, killed (also with SIGKILL) and restarted on the same
//! address. Dropping a [`Process`] kills it, so no test leaves one behind. A process starts
//! directly on this machine, or through a [`Launcher`] (inside a network namespace, say).

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::launcher::Launcher;

/// How long a process may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running process of one of the workspace's binaries.
#[derive(Debug)]
pub struct Process {
    launcher: Launcher,
    bin: PathBuf,
    args: Vec<OsString>,
    log: PathBuf,
    child: Option<Child>,
    addr: SocketAddr,
}

impl Process {
    /// Starts binary `bin` with `args`, its stderr appended to `log`, and waits for the
    /// `listening on IP:PORT` line on its stdout.
    pub fn start<I, S>(bin: &str, args: I, log: &Path) -> Process
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Self::start_with(&Launcher::local(), bin, args, log)
    }

    /// [`Process::start`] with environment variables `env` set as well (`SSL_CERT_FILE`, say),
    /// also when it restarts.
    pub fn start_with_env<I, S, E, K, V>(bin: &str, args: I, env: E, log: &Path) -> Process
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
        E: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        let launcher = env
            .into_iter()
            .fold(Launcher::local(), |launcher, (name, value)| {
                launcher.env(name, value)
            });
        Self::start_with(&launcher, bin, args, log)
    }

    /// [`Process::start`] through `launcher`.
    pub fn start_with<I, S>(launcher: &Launcher, bin: &str, args: I, log: &Path) -> Process
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let bin = crate::bin_path(bin);
        let (child, addr) = spawn(launcher, &bin, &args, log);
        Process {
            launcher: launcher.clone(),
            bin,
            args,
            log: log.to_owned(),
            child: Some(child),
            addr,
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its process id, while it runs.
    pub fn id(&self) -> u32 {
        self.child.as_ref().expect("the process runs").id()
    }

    /// `ws://ADDR/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Kills it with SIGKILL, as a crash would, and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again with the same arguments, except that it listens on the address it had.
    pub fn restart(&mut self) {
        self.kill();
        let mut args = self.args.clone();
        if let Some(i) = args.iter().position(|a| a == "--listen") {
            args[i + 1] = self.addr.to_string().into();
        }
        // The old socket may linger briefly; retry until the port is free again.
        for attempt in 0.. {
            match try_spawn(&self.launcher, &self.bin, &args, &self.log) {
                Ok((child, addr)) => {
                    self.child = Some(child);
                    self.addr = addr;
                    return;
                }
                Err(e) if attempt < 50 => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("cannot restart {}: {e}", self.bin.display()),
            }
        }
    }

    /// What it wrote on stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(launcher: &Launcher, bin: &Path, args: &[OsString], log: &Path) -> (Child, SocketAddr) {
    try_spawn(launcher, bin, args, log)
        .unwrap_or_else(|e| panic!("{} {args:?}: {e}", bin.display()))
}

fn try_spawn(
    launcher: &Launcher,
    bin: &Path,
    args: &[OsString],
    log: &Path,
) -> Result<(Child, SocketAddr), String> {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
    let mut child = launcher
        .command(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                // Nobody listens any more; keep draining so the process never blocks.
                continue;
            }
        }
    });
    loop {
        match received.recv_timeout(START_TIMEOUT) {
            Ok(line) => {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let addr = addr
                        .trim()
                        .parse()
                        .map_err(|e| format!("bad address {addr}: {e}"))?;
                    return Ok((child, addr));
                }
            }
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                let log = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(10).collect();
                return Err(format!(
                    "did not print its address ({status}); last log lines:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ));
            }
        }
    }
}
