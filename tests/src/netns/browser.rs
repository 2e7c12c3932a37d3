//! A headless Chromium inside a host: chromedriver and the browser it starts both run in the
//! host's namespace (chromedriver talks to Chromium over the host's own 127.0.0.1), and the
//! test reaches chromedriver through a [`Forwarder`] from its own 127.0.0.1. The browser sees
//! the network as the host does: its pages come from other hosts' addresses.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use serde_json::{json, Value};

use super::{Forwarder, Host};

/// How long chromedriver may take to open a session.
const SESSION_TIMEOUT: Duration = Duration::from_secs(30);

/// A headless Chromium running inside a host, driven over WebDriver.
pub struct HostBrowser {
    /// The WebDriver session.
    pub client: Client,
    driver: Child,
    _forwarder: Forwarder,
    profile: tempfile::TempDir,
}

impl std::fmt::Debug for HostBrowser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostBrowser")
            .field("driver", &self.driver.id())
            .finish()
    }
}

/// A Debian path, or the environment's override.
fn tool(variable: &str, default: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| default.to_owned())
}

impl HostBrowser {
    /// Starts chromedriver inside `host` and a headless Chromium session through it, with the
    /// same options as [`crate::browser::Browser::start`].
    pub async fn start(host: &Host) -> HostBrowser {
        // The host's namespace is the test's own: a port free now stays free.
        let port = host
            .listen("127.0.0.1:0".parse().unwrap())
            .and_then(|listener| listener.local_addr())
            .expect("a free port inside the host")
            .port();
        let driver = host
            .launcher()
            .command(tool("CHROMEDRIVER", "/usr/bin/chromedriver"))
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts (Debian package chromium-driver; scripts/setup.sh)");
        let forwarder = host.forward(([127, 0, 0, 1], port).into());
        let profile = tempfile::tempdir().expect("a profile directory");
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": tool("CHROMIUM", "/usr/bin/chromium"),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("an object literal")
        };
        let deadline = Instant::now() + SESSION_TIMEOUT;
        let url = format!("http://{}", forwarder.addr());
        // Until chromedriver listens, the forwarder closes each connection: try again.
        let client = loop {
            crate::install_tls_provider();
            let mut builder = ClientBuilder::rustls().expect("TLS roots");
            builder.capabilities(capabilities.clone());
            match builder.connect(&url).await {
                Ok(client) => break client,
                Err(e) if Instant::now() > deadline => {
                    panic!("no WebDriver session in {}: {e}", host.name())
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        HostBrowser {
            client,
            driver,
            _forwarder: forwarder,
            profile,
        }
    }

    /// Runs `script` (a function body; it may `return` a promise) and returns its result.
    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }
}

impl Drop for HostBrowser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // Chromium runs in its own session: find its processes by their unique profile path.
        // (Dropping the network kills whatever is left inside the host, too.)
        let profile = self.profile.path().to_string_lossy().into_owned();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            if String::from_utf8_lossy(&cmdline).contains(&profile) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}
