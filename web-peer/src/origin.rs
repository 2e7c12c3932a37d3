//! Which peer URLs a page may open. A page loaded over https cannot open unencrypted `ws://`
//! connections (mixed content: the browser refuses them), so it skips such peers and says so
//! rather than waiting for connections that never come.

/// Why [`reachable`] refuses a URL, for people.
pub const MIXED_CONTENT: &str = "this page is loaded over https, and a browser does not let an \
    https page open unencrypted ws:// connections (mixed content)";

/// Whether the page or worker running this code was loaded over https.
pub fn page_is_https() -> bool {
    js_sys::Reflect::get(&js_sys::global(), &"location".into())
        .and_then(|location| js_sys::Reflect::get(&location, &"protocol".into()))
        .ok()
        .and_then(|protocol| protocol.as_string())
        .is_some_and(|protocol| protocol == "https:")
}

/// Whether a page (loaded over https or not) may open a WebSocket to `url`.
pub fn reachable(url: &str, page_is_https: bool) -> bool {
    let unencrypted = url
        .get(..5)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("ws://"));
    !(page_is_https && unencrypted)
}

#[cfg(test)]
mod tests {
    use super::reachable;

    #[test]
    fn an_https_page_skips_only_unencrypted_peers() {
        assert!(!reachable("ws://192.168.1.5:7003/", true));
        assert!(!reachable("WS://192.168.1.5:7003/", true));
        assert!(reachable("wss://peer.example:7003/", true));
        assert!(reachable("ws://192.168.1.5:7003/", false));
        assert!(reachable("wss://peer.example:7003/", false));
        assert!(reachable("ws:/", true));
    }
}
