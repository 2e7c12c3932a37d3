//! Running a command to completion and checking what it did, ripgrep style: a failed check
//! prints the command, its directory, its exit status, stdout and stderr.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
        let mut cmd = Command::new(crate::bin_path(bin));
        cmd.current_dir(self.path());
        TestCommand { cmd }
    }
}

impl Default for Dir {
    fn default() -> Self {
        Self::new()
    }
}

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

    /// Runs the command to completion.
    pub fn run(&mut self) -> Finished {
        let output = self.cmd.output().expect("the command starts");
        Finished {
            description: format!("{:?} in {:?}", self.cmd, self.cmd.get_current_dir()),
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
