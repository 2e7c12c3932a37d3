//! Where a connection really comes from: its TCP source, or, when that source is a reverse
//! proxy the operator trusts, the address the proxy saw and appended to `X-Forwarded-For`.
//!
//! Only the rightmost entry is taken: every entry to its left was written by the client or by
//! proxies nobody vouched for, so believing one would let anybody announce any address.

use std::net::IpAddr;

use axum::http::HeaderMap;

/// The connection's client address, given its TCP `source`, its request `headers` and the
/// proxies trusted to say who their client was.
pub fn client_address(source: IpAddr, headers: &HeaderMap, trusted_proxies: &[IpAddr]) -> IpAddr {
    if !trusted_proxies.contains(&canonical(source)) {
        return source;
    }
    // Several X-Forwarded-For headers are one list, in order (RFC 9110, section 5.3).
    let last = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .next_back();
    last.and_then(|entry| entry.trim().parse::<IpAddr>().ok())
        .map(canonical)
        .unwrap_or(source)
}

/// `addr`, with an IPv4 address mapped into IPv6 written as IPv4, as a dual-stack listener
/// reports it.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append("x-forwarded-for", value.parse().unwrap());
        }
        map
    }

    const PROXY: &str = "127.0.0.1";

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_untrusted_source_is_taken_as_it_is_whatever_it_claims() {
        let forged = headers(&["203.0.113.9"]);
        assert_eq!(
            client_address(ip("198.51.100.1"), &forged, &[]),
            ip("198.51.100.1")
        );
        assert_eq!(
            client_address(ip("198.51.100.1"), &forged, &[ip(PROXY)]),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn a_trusted_proxy_is_believed_for_the_hop_it_appended_only() {
        let trusted = [ip(PROXY)];
        let chain = headers(&["10.9.9.9, 192.0.2.7"]);
        assert_eq!(client_address(ip(PROXY), &chain, &trusted), ip("192.0.2.7"));
        // The client's own header comes first and the proxy's entry last, even across headers.
        let split = headers(&["10.9.9.9", "192.0.2.8"]);
        assert_eq!(client_address(ip(PROXY), &split, &trusted), ip("192.0.2.8"));
    }

    #[test]
    fn a_trusted_proxy_without_a_usable_header_leaves_its_own_address() {
        let trusted = [ip(PROXY)];
        assert_eq!(
            client_address(ip(PROXY), &HeaderMap::new(), &trusted),
            ip(PROXY)
        );
        assert_eq!(
            client_address(ip(PROXY), &headers(&["not an address"]), &trusted),
            ip(PROXY)
        );
    }

    #[test]
    fn mapped_ipv4_sources_match_ipv4_proxies() {
        let trusted = [ip(PROXY)];
        let mapped = ip("::ffff:127.0.0.1");
        assert_eq!(
            client_address(mapped, &headers(&["192.0.2.7"]), &trusted),
            ip("192.0.2.7")
        );
    }
}
