//! Running a command to completion and checking what it did, ripgrep style: a failed check
//! prints the command, its directory, its exit status, stdout and stderr.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::launcher::Launcher;

/// A temporary directory that tests write their inputs into and run commands in.
#[derive(Debug)]
pub struct Dir {
    root: tempfile::TempDir,
}

impl Dir {
    /// A fresh, empty directory, removed when dropped.
    pub fn new() -> Self {
        Self {
            root: tempfile::Builder::new()
                .prefix("mtorrent-e2e-")
                .tempdir()
                .expect("a temporary directory"),
        }
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        self.root.path()
    }

    /// The path of `name` inside the directory.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.root.path().join(name)
    }

    /// Writes `contents` to `name` inside the directory.
    pub fn write(&self, name: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(name);
        std::fs::write(&path, contents).expect("write a test file");
        path
    }

    /// Reads `name` inside the directory.
    pub fn read(&self, name: impl AsRef<Path>) -> Vec<u8> {
        std::fs::read(self.join(name)).expect("read a test file")
    }

    /// The names of the entries in the directory, sorted.
    pub fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path())
            .expect("list the test directory")
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// A command running binary `bin` of the workspace in this directory.
    pub fn command(&self, bin: &str) -> TestCommand {
        // Peers under test listen on loopback, on ports the system picks.
        self.command_with(&Launcher::local(), bin)
    }

    /// [`Dir::command`] through `launcher`.
    pub fn command_with(&self, launcher: &Launcher, bin: &str) -> TestCommand {
        let mut cmd = launcher.command(crate::bin_path(bin));
        cmd.current_dir(self.path());
        // Commands under test read no settings of the machine's user.
        cmd.env("XDG_CONFIG_HOME", self.path().join(".config"))
            .env_remove("MTORRENT_TRACKERS");
        TestCommand { cmd }
    }
}

impl Default for Dir {
    fn default() -> Self {
        Self::new()
    }
}

/// How long a command may run before the test gives up on it.
pub const COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// A command under test.
#[derive(Debug)]
pub struct TestCommand {
    cmd: Command,
}

/// What a finished command did.
pub struct Finished {
    description: String,
    output: Output,
}

impl TestCommand {
    /// Appends arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cmd.args(args);
        self
    }

    /// Sets an environment variable of the command.
    pub fn env(&mut self, name: &str, value: impl AsRef<std::ffi::OsStr>) -> &mut Self {
        self.cmd.env(name, value);
        self
    }

    /// Runs the command to completion; a command still running after [`COMMAND_TIMEOUT`] is
    /// killed and the test fails, so that no test hangs.
    pub fn run(&mut self) -> Finished {
        use std::io::Read;
        use std::process::Stdio;
        let description = format!("{:?} in {:?}", self.cmd, self.cmd.get_current_dir());
        let mut child = self
            .cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the command starts");
        let drain = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                bytes
            })
        };
        let stdout = drain(Box::new(child.stdout.take().expect("piped")));
        let stderr = drain(Box::new(child.stderr.take().expect("piped")));
        let deadline = std::time::Instant::now() + COMMAND_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("the command can be waited for") {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                let stderr = stderr.join().unwrap_or_default();
                panic!(
                    "{description} still ran after {COMMAND_TIMEOUT:?}; stderr:\n{}",
                    String::from_utf8_lossy(&stderr)
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        let output = std::process::Output {
            status,
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        };
        Finished {
            description,
            output,
        }
    }

    /// Runs the command and checks that it exited 0; returns its stdout.
    pub fn stdout(&mut self) -> String {
        self.run().success().stdout()
    }
}

impl Finished {
    /// Checks that the command exited 0.
    pub fn success(self) -> Self {
        assert!(self.output.status.success(), "command failed:\n{self}");
        self
    }

    /// Checks that the command exited with `code`.
    pub fn code(self, code: i32) -> Self {
        assert_eq!(
            self.output.status.code(),
            Some(code),
            "unexpected exit status:\n{self}"
        );
        self
    }

    /// Checks that stderr contains `needle`.
    pub fn stderr_contains(self, needle: &str) -> Self {
        assert!(
            self.stderr().contains(needle),
            "stderr lacks {needle:?}:\n{self}"
        );
        self
    }

    /// Checks that stdout contains `needle`.
    pub fn stdout_contains(self, needle: &str) -> Self {
        assert!(
            self.stdout().contains(needle),
            "stdout lacks {needle:?}:\n{self}"
        );
        self
    }

    /// The command's stdout, as text.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    /// The command's stderr, as text.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
}

impl fmt::Display for Finished {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "command: {}", self.description)?;
        writeln!(f, "status: {}", self.output.status)?;
        writeln!(f, "--- stdout ---\n{}", self.stdout())?;
        write!(f, "--- stderr ---\n{}", self.stderr())
    }
}

impl fmt::Debug for Finished {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
