//! A headless Chromium under test, with a fresh profile, driven over WebDriver through its own
//! chromedriver on an OS-chosen port. chromedriver runs on this machine ([`Driver::local`]) or
//! through a [`Launcher`] elsewhere, inside a network namespace say, reached through a
//! [`Forwarder`] that the [`Browser`] keeps open ([`Driver::new`]). Dropping a [`Browser`]
//! kills chromedriver and every process of its browser (found by the profile directory on their
//! command lines).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Map, Value};

use crate::launcher::Launcher;
use crate::netns::Forwarder;

/// How long a page may take to reach a state a test waits for.
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(90);

/// How long chromedriver may take to open a session.
const SESSION_TIMEOUT: Duration = Duration::from_secs(30);

/// A host name that Chromium, started by [`Browser::start_insecure`], maps to 127.0.0.1: a page
/// opened at `http://mtorrent.test:PORT/` is not a secure context (only https and the local
/// machine's own names are), as a page opened over plain http from another machine is not.
pub const INSECURE_HOST: &str = "mtorrent.test";

/// A running headless Chromium.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    driver: Child,
    /// The test's path to chromedriver, when it runs elsewhere.
    _forwarder: Option<Forwarder>,
    _profile: tempfile::TempDir,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("driver", &self.driver.id())
            .finish()
    }
}

/// Where a browser's chromedriver runs and how the test reaches it.
#[derive(Debug)]
pub struct Driver {
    launcher: Launcher,
    /// The port chromedriver listens on, where it runs.
    port: u16,
    /// Where the test reaches it.
    addr: SocketAddr,
    forwarder: Option<Forwarder>,
}

impl Driver {
    /// chromedriver on this machine, on a free port of 127.0.0.1.
    pub fn local() -> Driver {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            listener.local_addr().unwrap().port()
        };
        Driver {
            launcher: Launcher::direct(),
            port,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            forwarder: None,
        }
    }

    /// chromedriver started through `launcher`, listening on `port` where it runs, which the
    /// test reaches through `forwarder`.
    pub fn new(launcher: Launcher, port: u16, forwarder: Forwarder) -> Driver {
        Driver {
            launcher,
            port,
            addr: forwarder.addr(),
            forwarder: Some(forwarder),
        }
    }

    /// Sets variable `name` for chromedriver and the browser it starts (`HOME`, say, for the
    /// browser's certificate database).
    pub fn env(mut self, name: &str, value: impl Into<std::ffi::OsString>) -> Driver {
        self.launcher = self.launcher.env(name, value);
        self
    }
}

/// A Debian path, or the environment's override.
fn tool(variable: &str, default: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| default.to_owned())
}

/// The WebDriver capabilities of a headless Chromium with its profile in `profile` and
/// `extra_args` after the usual command-line arguments.
pub fn capabilities(profile: &Path, extra_args: &[String]) -> Map<String, Value> {
    let mut args: Vec<String> = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
    ]
    .map(String::from)
    .to_vec();
    args.push(format!("--user-data-dir={}", profile.display()));
    args.extend_from_slice(extra_args);
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": tool("CHROMIUM", "/usr/bin/chromium"),
            "args": args,
        },
    });
    let Value::Object(capabilities) = capabilities else {
        unreachable!("an object literal")
    };
    capabilities
}

/// Fails the test unless the built browser peer is there (`scripts/build-web.sh` makes it).
pub fn require_page() {
    let module = crate::www_dir().join("pkg/mtorrent_web_peer.js");
    assert!(
        module.is_file(),
        "{} is missing: run scripts/build-web.sh",
        module.display()
    );
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session.
    pub async fn start() -> Browser {
        Browser::start_with(Driver::local(), &[]).await
    }

    /// [`Browser::start`], with [`INSECURE_HOST`] resolving to 127.0.0.1.
    pub async fn start_insecure() -> Browser {
        Browser::start_with(
            Driver::local(),
            &[format!(
                "--host-resolver-rules=MAP {INSECURE_HOST} 127.0.0.1"
            )],
        )
        .await
    }

    /// A browser on the page at `url` (an `http://127.0.0.1:PORT/` URL), opened at
    /// [`INSECURE_HOST`] instead, so that it is not a secure context; its peer ready.
    pub async fn on_insecure_page(url: &str) -> Browser {
        let browser = Browser::start_insecure().await;
        browser.open(&insecure_url(url)).await;
        browser
    }

    /// Starts chromedriver as `driver` says and a headless Chromium session through it, with
    /// more Chromium command-line arguments.
    pub async fn start_with(driver: Driver, extra_args: &[String]) -> Browser {
        let Driver {
            launcher,
            port,
            addr,
            forwarder,
        } = driver;
        let child = launcher
            .command(tool("CHROMEDRIVER", "/usr/bin/chromedriver"))
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts (Debian package chromium-driver; scripts/setup.sh)");
        let profile = tempfile::tempdir().expect("a profile directory");
        let capabilities = capabilities(profile.path(), extra_args);
        let deadline = Instant::now() + SESSION_TIMEOUT;
        let url = format!("http://{addr}");
        // Until chromedriver listens, connections fail (or a forwarder closes them): try again.
        crate::install_tls_provider();
        let client = loop {
            let mut builder = ClientBuilder::rustls().expect("TLS roots");
            builder.capabilities(capabilities.clone());
            match builder.connect(&url).await {
                Ok(client) => break client,
                Err(e) if Instant::now() > deadline => panic!("no WebDriver session at {url}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        Browser {
            client,
            driver: child,
            _forwarder: forwarder,
            _profile: profile,
        }
    }

    /// Starts a browser on the page at `url`, its peer ready.
    pub async fn on_page(url: &str) -> Browser {
        let browser = Browser::start().await;
        browser.open(url).await;
        browser
    }

    /// Saves what the page shows now as a PNG at `path`: for people to look at.
    pub async fn screenshot(&self, path: &std::path::Path) {
        // A desktop window, tall enough for the whole page.
        let _ = self.client.set_window_size(1000, 1400).await;
        let png = self.client.screenshot().await.expect("a screenshot");
        std::fs::write(path, png).expect("write the screenshot");
    }

    /// Opens `url` and waits until the page's peer is ready.
    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.expect("the page loads");
        self.wait_for_state("page-status", &["ready"]).await;
    }

    /// Waits until the element `id` has one of `states` in its `data-state`; returns the state
    /// reached and the element's text. Fails on the state `error` unless it is expected.
    pub async fn wait_for_state(&self, id: &str, states: &[&str]) -> (String, String) {
        let deadline = Instant::now() + PAGE_TIMEOUT;
        loop {
            let (state, text) = self.state(id).await;
            if states.contains(&state.as_str()) {
                return (state, text);
            }
            assert!(state != "error", "#{id} shows an error: {text}");
            if Instant::now() > deadline {
                let (_, page) = self.state("page-status").await;
                let (_, warnings) = self.state("download-warnings").await;
                let events = self
                    .eval("return JSON.stringify(window.mtorrentEvents);")
                    .await;
                panic!(
                    "#{id} never reached {states:?}; it says: {text}; the page says: {page}; \
                     warnings: {warnings}; latest events: {events}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The `data-state` and text of element `id`.
    pub async fn state(&self, id: &str) -> (String, String) {
        let value = self
            .eval(&format!(
                "const e = document.getElementById({id:?}); return [e.dataset.state ?? '', e.textContent];"
            ))
            .await;
        (
            value[0].as_str().unwrap_or_default().to_owned(),
            value[1].as_str().unwrap_or_default().to_owned(),
        )
    }

    /// Runs `script` (a function body; it may `return` a promise) and returns its result.
    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Chooses the file at `path` in the file input `id`.
    pub async fn choose_file(&self, id: &str, path: &std::path::Path) {
        let input = self
            .client
            .find(Locator::Id(id))
            .await
            .expect("the file input exists");
        input
            .send_keys(path.to_str().expect("a UTF-8 path"))
            .await
            .expect("the file is chosen");
    }

    /// Shares `file` from the page and returns the `.mtorrent` it built.
    pub async fn share(&self, file: &Path) -> String {
        self.choose_file("share-file", file).await;
        // The status may still say the previous file is seeded: wait for this one.
        let name = file.file_name().unwrap().to_string_lossy();
        loop {
            let (_, text) = self.wait_for_state("share-status", &["seeding"]).await;
            if text.starts_with(&format!("Seeding {name} ")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let document = self
            .eval(&shared_row(&name, "a.mtorrent').dataset.document"))
            .await;
        document.as_str().expect("the .mtorrent").to_owned()
    }

    /// Waits until the page says it uploaded something of shared file `name`.
    pub async fn wait_for_upload(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let uploaded = self
                .eval(&shared_row(name, ".uploaded').textContent"))
                .await;
            if uploaded.as_str().is_some_and(|text| text != "0 bytes") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the page never showed an upload of {name}: {uploaded}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Those of the page's controls with ids `ids` that are visible (their computed
    /// visibility: what the user sees, not what the DOM holds).
    pub async fn visible(&self, ids: &[&str]) -> Vec<String> {
        let visible = self
            .eval(&format!(
                "return {ids:?}.filter((id) => document.getElementById(id).checkVisibility());"
            ))
            .await;
        serde_json::from_value(visible).expect("a list of ids")
    }

    /// The SHA-1 (hex) of the bytes behind the link `id` (an object URL).
    pub async fn sha1_of_link(&self, id: &str) -> String {
        let value = self
            .eval(&format!(
                "const href = document.getElementById({id:?}).href;
                 return fetch(href).then((r) => r.arrayBuffer())
                   .then((b) => crypto.subtle.digest('SHA-1', b))
                   .then((d) => [...new Uint8Array(d)].map((x) => x.toString(16).padStart(2, '0')).join(''));"
            ))
            .await;
        value.as_str().expect("a hex digest").to_owned()
    }

    /// The bytes behind the link `id` (an object URL), as hex: for small files, on pages
    /// without WebCrypto.
    pub async fn hex_of_link(&self, id: &str) -> String {
        let value = self
            .eval(&format!(
                "const href = document.getElementById({id:?}).href;
                 const digits = [...Array(256).keys()].map((x) => x.toString(16).padStart(2, '0'));
                 return fetch(href).then((r) => r.arrayBuffer()).then((b) => {{
                   const bytes = new Uint8Array(b);
                   const parts = [];
                   for (let at = 0; at < bytes.length; at += 65536) {{
                     parts.push(Array.from(bytes.subarray(at, at + 65536), (x) => digits[x]).join(''));
                   }}
                   return parts.join('');
                 }});"
            ))
            .await;
        value.as_str().expect("hex").to_owned()
    }
}

/// A script returning `property` of the cell `selector` in the page's row of shared file
/// `name`, written as `selector').property`.
pub fn shared_row(name: &str, selector_and_property: &str) -> String {
    format!(
        "const row = [...document.querySelectorAll('#shared tbody tr')]
           .find((row) => row.querySelector('.name').textContent === {name:?});
         return row?.querySelector('{selector_and_property};"
    )
}

/// The controls of the page that only mean something after a share or a download: none is
/// visible on a fresh page.
pub const AFTER_AN_ACTION: [&str; 5] = [
    "shared",
    "share-progress",
    "download-save",
    "download-stats",
    "download-progress",
];

/// `url` (an `http://127.0.0.1:PORT/...` URL) at [`INSECURE_HOST`].
pub fn insecure_url(url: &str) -> String {
    url.replacen("127.0.0.1", INSECURE_HOST, 1)
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // Chromium runs in its own session: find its processes by their unique profile path.
        let profile = self._profile.path().to_string_lossy().into_owned();
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
