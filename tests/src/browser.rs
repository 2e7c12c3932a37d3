//! A headless Chromium under test, with a fresh profile, driven over WebDriver through its own
//! chromedriver on an OS-chosen port. Dropping a [`Browser`] kills chromedriver and every
//! process of its browser (found by the profile directory on their command lines).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// How long a page may take to reach a state a test waits for.
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(90);

/// A host name that Chromium, started by [`Browser::start_insecure`], maps to 127.0.0.1: a page
/// opened at `http://mtorrent.test:PORT/` is not a secure context (only https and the local
/// machine's own names are), as a page opened over plain http from another machine is not.
pub const INSECURE_HOST: &str = "mtorrent.test";

/// A running headless Chromium.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("driver", &self.driver.id())
            .finish()
    }
}

/// A Debian path, or the environment's override.
fn tool(variable: &str, default: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| default.to_owned())
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session.
    pub async fn start() -> Browser {
        Browser::start_with(&[]).await
    }

    /// [`Browser::start`], with [`INSECURE_HOST`] resolving to 127.0.0.1.
    pub async fn start_insecure() -> Browser {
        Browser::start_with(&[format!(
            "--host-resolver-rules=MAP {INSECURE_HOST} 127.0.0.1"
        )])
        .await
    }

    /// A browser on the page at `url` (an `http://127.0.0.1:PORT/` URL), opened at
    /// [`INSECURE_HOST`] instead, so that it is not a secure context; its peer ready.
    pub async fn on_insecure_page(url: &str) -> Browser {
        let browser = Browser::start_insecure().await;
        browser.open(&insecure_url(url)).await;
        browser
    }

    /// [`Browser::start`], with more Chromium command-line arguments.
    pub async fn start_with(extra_args: &[String]) -> Browser {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            listener.local_addr().unwrap().port()
        };
        let driver = Command::new(tool("CHROMEDRIVER", "/usr/bin/chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts (Debian package chromium-driver; scripts/setup.sh)");
        let profile = tempfile::tempdir().expect("a profile directory");
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
        args.push(format!("--user-data-dir={}", profile.path().display()));
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
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            crate::install_tls_provider();
            let mut builder = ClientBuilder::rustls().expect("TLS roots");
            builder.capabilities(capabilities.clone());
            match builder.connect(&format!("http://127.0.0.1:{port}")).await {
                Ok(client) => break client,
                Err(e) if Instant::now() > deadline => panic!("no WebDriver session: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        Browser {
            client,
            driver,
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
        let pids: Vec<String> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let pid = entry.file_name().to_string_lossy().into_owned();
                pid.parse::<u32>().ok()?;
                let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
                String::from_utf8_lossy(&cmdline)
                    .contains(&profile)
                    .then_some(pid)
            })
            .collect();
        if !pids.is_empty() {
            let _ = Command::new("sh")
                .args(["-c", &format!("kill -9 {} 2>/dev/null", pids.join(" "))])
                .status();
        }
    }
}
