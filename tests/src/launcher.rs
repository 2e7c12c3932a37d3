//! How a test starts a program: directly on this machine, or through a wrapper that runs it
//! elsewhere (`ip netns exec NAME`, inside a network namespace), with the environment it needs.

use std::ffi::{OsStr, OsString};
use std::process::Command;

/// A way to start programs: an optional wrapper and changes to their environment.
#[derive(Debug, Clone)]
pub struct Launcher {
    /// The wrapper program and its first arguments; empty to run programs directly.
    wrapper: Vec<OsString>,
    /// Variables to set (`Some`) or remove (`None`), in order.
    env: Vec<(OsString, Option<OsString>)>,
}

impl Launcher {
    /// Runs programs directly on this machine, peers listening on loopback
    /// ([`crate::TEST_LISTEN`]): what tests on 127.0.0.1 use.
    pub fn local() -> Self {
        Self::direct().env("MTORRENT_LISTEN", crate::TEST_LISTEN)
    }

    /// Runs programs directly on this machine, the environment unchanged.
    pub fn direct() -> Self {
        Self {
            wrapper: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Runs each program as the last arguments of `wrapper` (a program and its first
    /// arguments, such as `ip netns exec NAME`), the environment unchanged.
    pub fn wrapped<I, S>(wrapper: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let wrapper: Vec<OsString> = wrapper.into_iter().map(Into::into).collect();
        assert!(!wrapper.is_empty(), "a wrapper names a program");
        Self {
            wrapper,
            env: Vec::new(),
        }
    }

    /// Sets variable `name` for the programs it starts.
    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((name.into(), Some(value.into())));
        self
    }

    /// Removes variable `name` from the environment of the programs it starts.
    pub fn env_remove(mut self, name: impl Into<OsString>) -> Self {
        self.env.push((name.into(), None));
        self
    }

    /// A command that runs `program` (its path), through the wrapper if there is one, with the
    /// environment changes applied; add its arguments to it.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = match self.wrapper.split_first() {
            Some((wrapper, first)) => {
                let mut command = Command::new(wrapper);
                command.args(first).arg(program);
                command
            }
            None => Command::new(program),
        };
        for (name, value) in &self.env {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        command
    }
}
