//! Announced addresses checked against where the announce came from, so that nobody can make
//! the swarm dial a host that is not theirs (the classic tracker amplification attack: one
//! connection listing a victim's address under a thousand peer ids).
//!
//! A peer that gives only its port is completed with its source address and needs no check. A
//! peer that gives a URL (`--advertise`) must be at the address its announce came from: an IP
//! literal equal to it, or a name that resolves to it. Operators can exempt relays they trust
//! (`--trusted-relay`), which announce on behalf of peers elsewhere.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mtorrent_shared::tracker::PeerAddress;
use tokio::sync::Semaphore;

use crate::client_address::canonical;

/// How long a name's addresses are trusted once looked up.
const LOOKUP_TTL: Duration = Duration::from_secs(60);
/// Most names remembered; beyond, the memory is cleared.
const MAX_REMEMBERED: usize = 4_096;
/// Most lookups under way at once, for all connections together.
const MAX_LOOKUPS: usize = 8;
/// How long a lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// Checks announced addresses; see the module's documentation.
/// Why an announced URL was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The URL is not at the announcer's address: the announce breaks the rules.
    NotYours(String),
    /// Its name could not be looked up now (too many lookups under way, or one too slow): the
    /// announcer did nothing wrong and may try again.
    TryLater(String),
}

#[derive(Debug)]
pub struct AdvertisedHosts {
    trusted_relays: Vec<IpAddr>,
    resolved: Mutex<HashMap<String, (Instant, Vec<IpAddr>)>>,
    lookups: Semaphore,
}

impl AdvertisedHosts {
    /// A checker that lets `trusted_relays` announce any host.
    pub fn new(trusted_relays: &[IpAddr]) -> Self {
        Self {
            trusted_relays: trusted_relays.iter().copied().map(canonical).collect(),
            resolved: Mutex::new(HashMap::new()),
            lookups: Semaphore::new(MAX_LOOKUPS),
        }
    }

    /// `Ok` if a connection from `source` may announce `address`; otherwise why not.
    pub async fn check(&self, address: &PeerAddress, source: IpAddr) -> Result<(), Refusal> {
        let PeerAddress::Native { url } = address else {
            return Ok(());
        };
        let source = canonical(source);
        if self.trusted_relays.contains(&source) {
            return Ok(());
        }
        let host = host_of(url)
            .ok_or_else(|| Refusal::NotYours(format!("{url} has no host a peer can dial")))?;
        let addresses = match host.parse::<IpAddr>() {
            Ok(ip) => vec![canonical(ip)],
            Err(_) => self.resolve(host).await.map_err(Refusal::TryLater)?,
        };
        if addresses.contains(&source) {
            Ok(())
        } else {
            Err(Refusal::NotYours(format!(
                "{url} is not at {source}, where the announce came from: announce your port only, \
                 or from the host you advertise"
            )))
        }
    }

    /// The addresses `name` resolves to, remembered for [`LOOKUP_TTL`].
    async fn resolve(&self, name: &str) -> Result<Vec<IpAddr>, String> {
        let name = name.to_ascii_lowercase();
        if let Some((at, addresses)) = self.lock().get(&name) {
            if at.elapsed() < LOOKUP_TTL {
                return Ok(addresses.clone());
            }
        }
        let Ok(_permit) = self.lookups.try_acquire() else {
            return Err(format!(
                "too many names being looked up; announce {name} again later"
            ));
        };
        let lookup = tokio::net::lookup_host((name.as_str(), 0));
        let addresses: Vec<IpAddr> = match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
            Ok(Ok(found)) => found.map(|a| canonical(a.ip())).collect(),
            // A name that does not resolve is remembered too, as resolving to nothing.
            Ok(Err(_)) => Vec::new(),
            Err(_) => return Err(format!("looking up {name} took too long")),
        };
        let mut resolved = self.lock();
        if resolved.len() >= MAX_REMEMBERED {
            resolved.retain(|_, (at, _)| at.elapsed() < LOOKUP_TTL);
        }
        if resolved.len() >= MAX_REMEMBERED {
            resolved.clear();
        }
        resolved.insert(name, (Instant::now(), addresses.clone()));
        Ok(addresses)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Vec<IpAddr>)>> {
        self.resolved.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The host of a `ws://` or `wss://` URL: a name, an IPv4 address, or an IPv6 address without
/// its brackets; `None` if there is none, or the URL carries user information.
fn host_of(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("wss://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.contains('@') {
        return None;
    }
    let host = if let Some(bracketed) = authority.strip_prefix('[') {
        bracketed.split(']').next()?
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn native(url: &str) -> PeerAddress {
        PeerAddress::Native { url: url.into() }
    }

    #[tokio::test]
    async fn a_name_that_cannot_be_looked_up_now_is_to_try_again_not_a_fault() {
        let hosts = AdvertisedHosts::new(&[]);
        let source: IpAddr = "192.0.2.7".parse().unwrap();
        // Every lookup slot busy.
        let _busy = hosts.lookups.try_acquire_many(MAX_LOOKUPS as u32).unwrap();
        let refused = hosts
            .check(&native("ws://peer.example:7003/"), source)
            .await;
        assert!(matches!(refused, Err(Refusal::TryLater(_))), "{refused:?}");
        // An address that is not the announcer's is a fault, busy or not.
        let refused = hosts.check(&native("ws://192.0.2.8:7003/"), source).await;
        assert!(matches!(refused, Err(Refusal::NotYours(_))), "{refused:?}");
    }

    #[test]
    fn the_host_is_found_in_every_form_of_url() {
        assert_eq!(host_of("ws://10.0.0.1:7003/"), Some("10.0.0.1"));
        assert_eq!(host_of("wss://peer.example:443/x?y"), Some("peer.example"));
        assert_eq!(host_of("ws://[::1]:7003/"), Some("::1"));
        assert_eq!(host_of("ws://name"), Some("name"));
        assert_eq!(host_of("ws://user@10.0.0.1/"), None);
        assert_eq!(host_of("ws://:7003/"), None);
        assert_eq!(host_of("http://10.0.0.1/"), None);
    }

    #[tokio::test]
    async fn a_peer_may_announce_only_its_own_address() {
        let hosts = AdvertisedHosts::new(&[]);
        let me: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(hosts
            .check(&native("ws://192.0.2.7:7003/"), me)
            .await
            .is_ok());
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert!(hosts
            .check(&native("ws://192.0.2.7:7003/"), mapped)
            .await
            .is_ok());
        for victim in [
            "ws://192.0.2.8:80/",
            "ws://127.0.0.1:22/",
            "ws://169.254.169.254/",
            "ws://[::1]:7003/",
        ] {
            let refused = hosts.check(&native(victim), me).await;
            assert!(refused.is_err(), "{victim} from {me}: {refused:?}");
        }
        assert!(hosts.check(&PeerAddress::Browser, me).await.is_ok());
        let port = PeerAddress::Listening {
            port: 7003,
            tls: false,
        };
        assert!(hosts.check(&port, me).await.is_ok());
    }

    #[tokio::test]
    async fn a_name_must_resolve_to_the_source() {
        let hosts = AdvertisedHosts::new(&[]);
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(hosts
            .check(&native("ws://localhost:7003/"), loopback)
            .await
            .is_ok());
        let elsewhere: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(hosts
            .check(&native("ws://localhost:7003/"), elsewhere)
            .await
            .is_err());
        assert!(hosts
            .check(&native("ws://no-such-host.invalid:7003/"), elsewhere)
            .await
            .is_err());
    }

    #[tokio::test]
    async fn a_trusted_relay_may_announce_any_host() {
        let relay: IpAddr = "192.0.2.1".parse().unwrap();
        let hosts = AdvertisedHosts::new(&[relay]);
        assert!(hosts
            .check(&native("ws://198.51.100.9:7003/"), relay)
            .await
            .is_ok());
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(hosts
            .check(&native("ws://198.51.100.9:7003/"), other)
            .await
            .is_err());
    }
}
