//! A headless Chromium inside a host: chromedriver and the browser it starts both run in the
//! host's namespace (chromedriver talks to Chromium over the host's own 127.0.0.1), and the
//! test reaches chromedriver through a [`super::Forwarder`] from its own 127.0.0.1. The browser
//! sees the network as the host does: its pages come from other hosts' addresses.

use super::Host;
use crate::browser::{Browser, Driver};

impl Host {
    /// chromedriver inside it, on a port of its own 127.0.0.1, forwarded to the test's.
    pub fn driver(&self) -> Driver {
        // The host's namespace is the test's own: a port free now stays free.
        let port = self
            .listen(([127, 0, 0, 1], 0).into())
            .and_then(|listener| listener.local_addr())
            .expect("a free port inside the host")
            .port();
        let forwarder = self.forward(([127, 0, 0, 1], port).into());
        Driver::new(self.launcher(), port, forwarder)
    }

    /// A headless Chromium running inside it, with the options of [`Browser::start`].
    pub async fn browser(&self) -> Browser {
        Browser::start_with(self.driver(), &[]).await
    }
}
