use super::*;
use proptest::prelude::*;

fn id(byte: u8) -> [u8; 20] {
    [byte; 20]
}

/// A captured announce, written by hand from the documented format.
#[test]
fn announce_fixture_decodes() {
    let text = format!(
        r#"{{"type":"announce","info_hash":"{}","peer_id":"{}","event":"started",
            "address":{{"kind":"native","url":"ws://127.0.0.1:6881/peer"}},"left":1024}}"#,
        "ab".repeat(20),
        "01".repeat(20)
    );
    let expected = ToTracker::Announce(Announce {
        info_hash: InfoHash(id(0xab)),
        peer_id: PeerId(id(0x01)),
        event: AnnounceEvent::Started,
        address: PeerAddress::Native {
            url: "ws://127.0.0.1:6881/peer".into(),
        },
        left: 1024,
        numwant: DEFAULT_NUMWANT,
        metainfo: None,
    });
    assert_eq!(ToTracker::decode(&text), Ok(expected));
}

#[test]
fn replies_use_the_documented_field_names() {
    let reply = FromTracker::Peers {
        info_hash: InfoHash(id(1)),
        interval_secs: 30,
        peers: vec![PeerInfo {
            peer_id: PeerId(id(2)),
            address: PeerAddress::Browser,
            complete: true,
        }],
        seeders: 1,
        leechers: 0,
    };
    let value: serde_json::Value = serde_json::from_str(&reply.encode()).unwrap();
    assert_eq!(value["type"], "peers");
    assert_eq!(value["interval_secs"], 30);
    assert_eq!(value["peers"][0]["address"]["kind"], "browser");
    assert_eq!(value["peers"][0]["peer_id"], "02".repeat(20));
    let error = FromTracker::error(ErrorCode::PeerIdTaken, "no");
    let value: serde_json::Value = serde_json::from_str(&error.encode()).unwrap();
    assert_eq!(value["type"], "error");
    assert_eq!(value["code"], "peer_id_taken");
}

#[test]
fn malformed_and_oversized_text_is_refused() {
    for text in [
        "",
        "{",
        "[]",
        "{}",
        r#"{"type":"nope"}"#,
        r#"{"type":"leave","info_hash":"zz","peer_id":"00"}"#,
        r#"{"type":"announce"}"#,
    ] {
        assert!(
            matches!(
                ToTracker::decode(text),
                Err(TrackerCodecError::Malformed(_))
            ),
            "{text:?}"
        );
    }
    let huge = " ".repeat(MAX_TRACKER_MESSAGE_BYTES + 1);
    assert_eq!(
        ToTracker::decode(&huge),
        Err(TrackerCodecError::TooLarge {
            size: MAX_TRACKER_MESSAGE_BYTES + 1
        })
    );
}

#[test]
fn ws_urls_are_checked() {
    for good in ["ws://127.0.0.1:1/peer", "wss://host", "ws://[::1]:80/"] {
        assert!(is_ws_url(good), "{good}");
    }
    for bad in ["http://a/", "ws://", "ws:///x", "ws://a b", "ws://a\n", ""] {
        assert!(!is_ws_url(bad), "{bad:?}");
    }
    assert!(!is_ws_url(&format!("ws://{}", "a".repeat(2048))));
    assert!(PeerAddress::Browser.is_valid());
}

fn any_hash() -> impl Strategy<Value = InfoHash> {
    any::<[u8; 20]>().prop_map(InfoHash)
}

fn any_peer_id() -> impl Strategy<Value = PeerId> {
    any::<[u8; 20]>().prop_map(PeerId)
}

fn any_address() -> impl Strategy<Value = PeerAddress> {
    prop_oneof![
        Just(PeerAddress::Browser),
        (1u16.., any::<bool>()).prop_map(|(port, tls)| PeerAddress::Listening { port, tls }),
        "ws://[a-z0-9.]{1,20}:[0-9]{1,5}/[a-z]{0,8}".prop_map(|url| PeerAddress::Native { url }),
    ]
}

fn any_peer() -> impl Strategy<Value = PeerInfo> {
    (any_peer_id(), any_address(), any::<bool>()).prop_map(|(peer_id, address, complete)| {
        PeerInfo {
            peer_id,
            address,
            complete,
        }
    })
}

fn any_event() -> impl Strategy<Value = AnnounceEvent> {
    prop_oneof![
        Just(AnnounceEvent::Started),
        Just(AnnounceEvent::Completed),
        Just(AnnounceEvent::Stopped),
        Just(AnnounceEvent::Update),
    ]
}

fn any_to_tracker() -> impl Strategy<Value = ToTracker> {
    prop_oneof![
        (
            any_hash(),
            any_peer_id(),
            any_event(),
            any_address(),
            any::<u64>(),
            any::<u32>(),
            proptest::option::of(".{0,40}")
        )
            .prop_map(
                |(info_hash, peer_id, event, address, left, numwant, metainfo)| {
                    ToTracker::Announce(Announce {
                        info_hash,
                        peer_id,
                        event,
                        address,
                        left,
                        numwant,
                        metainfo,
                    })
                }
            ),
        (any_hash(), any_peer_id())
            .prop_map(|(info_hash, peer_id)| ToTracker::Leave { info_hash, peer_id }),
        (any_hash(), any_peer_id(), any_peer_id(), ".{0,30}").prop_map(
            |(info_hash, from, to, dial)| ToTracker::Signal {
                info_hash,
                from,
                to,
                dial
            }
        ),
        (
            proptest::option::of(any_hash()),
            proptest::option::of(any::<u32>())
        )
            .prop_map(|(after, limit)| ToTracker::ListFiles { after, limit }),
        any_hash().prop_map(|info_hash| ToTracker::GetMetainfo { info_hash }),
        (".{0,30}", "[0-9a-f]{64}")
            .prop_map(|(tracker_id, nonce)| ToTracker::SyncHello { tracker_id, nonce }),
        (".{0,30}", "[0-9a-f]{64}", "[0-9a-f]{64}").prop_map(|(tracker_id, nonce, proof)| {
            ToTracker::SyncChallenge {
                tracker_id,
                nonce,
                proof,
            }
        }),
        "[0-9a-f]{64}".prop_map(|proof| ToTracker::SyncProof { proof }),
        ".{0,30}".prop_map(|tracker_id| ToTracker::SyncWelcome { tracker_id }),
        proptest::collection::vec((any_hash(), any_peer()), 0..4).prop_map(|peers| {
            ToTracker::SyncPeers {
                peers: peers
                    .into_iter()
                    .map(|(info_hash, peer)| SyncPeer { info_hash, peer })
                    .collect(),
            }
        }),
        Just(ToTracker::SyncStateEnd),
        (any_hash(), any_peer())
            .prop_map(|(info_hash, peer)| ToTracker::SyncPeer(SyncPeer { info_hash, peer })),
        (any_hash(), any_peer_id())
            .prop_map(|(info_hash, peer_id)| ToTracker::SyncPeerRemoved { info_hash, peer_id }),
        ".{0,30}".prop_map(|metainfo| ToTracker::SyncFile { metainfo }),
        (any_hash(), any_peer_id(), any_peer_id(), ".{0,30}").prop_map(
            |(info_hash, from, to, dial)| ToTracker::SyncSignal {
                info_hash,
                from,
                to,
                dial
            }
        ),
    ]
}

fn any_error_code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![
        Just(ErrorCode::Malformed),
        Just(ErrorCode::TooLarge),
        Just(ErrorCode::RateLimited),
        Just(ErrorCode::PeerIdTaken),
        Just(ErrorCode::TooManySwarms),
        Just(ErrorCode::TooManyConnections),
        Just(ErrorCode::UnknownFile),
        Just(ErrorCode::UnknownPeer),
        Just(ErrorCode::BadMetainfo),
        Just(ErrorCode::BadAddress),
    ]
}

fn any_from_tracker() -> impl Strategy<Value = FromTracker> {
    prop_oneof![
        (
            any_hash(),
            any::<u32>(),
            proptest::collection::vec(any_peer(), 0..5),
            any::<u32>(),
            any::<u32>()
        )
            .prop_map(|(info_hash, interval_secs, peers, seeders, leechers)| {
                FromTracker::Peers {
                    info_hash,
                    interval_secs,
                    peers,
                    seeders,
                    leechers,
                }
            }),
        (any_hash(), any_peer_id(), ".{0,30}").prop_map(|(info_hash, from, dial)| {
            FromTracker::Signal {
                info_hash,
                from,
                dial,
            }
        }),
        proptest::collection::vec(
            (
                any_hash(),
                ".{0,20}",
                any::<u64>(),
                any::<u32>(),
                any::<u32>()
            ),
            0..4
        )
        .prop_flat_map(|files| (Just(files), proptest::option::of(any_hash())))
        .prop_map(|(files, next)| FromTracker::Files {
            next,
            files: files
                .into_iter()
                .map(|(info_hash, name, size, seeders, leechers)| FileInfo {
                    info_hash,
                    name,
                    size,
                    seeders,
                    leechers,
                })
                .collect(),
        }),
        (any_hash(), ".{0,40}").prop_map(|(info_hash, metainfo)| FromTracker::Metainfo {
            info_hash,
            metainfo
        }),
        (any_error_code(), ".{0,40}")
            .prop_map(|(code, message)| FromTracker::Error { code, message }),
    ]
}

proptest! {
    #[test]
    fn to_tracker_round_trips(message in any_to_tracker()) {
        prop_assert_eq!(ToTracker::decode(&message.encode()), Ok(message));
    }

    #[test]
    fn from_tracker_round_trips(message in any_from_tracker()) {
        prop_assert_eq!(FromTracker::decode(&message.encode()), Ok(message));
    }

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,200}") {
        let _ = ToTracker::decode(&text);
        let _ = FromTracker::decode(&text);
    }

    /// Every truncation of an encoded message is refused, never accepted as something else.
    #[test]
    fn truncations_are_refused(message in any_to_tracker()) {
        let text = message.encode();
        for end in (0..text.len()).filter(|&end| text.is_char_boundary(end)) {
            prop_assert!(ToTracker::decode(&text[..end]).is_err());
        }
    }
}

#[test]
fn a_listening_port_resolves_to_a_url_on_the_source_address() {
    let listening = PeerAddress::Listening {
        port: 7003,
        tls: false,
    };
    assert!(listening.is_valid());
    assert!(!PeerAddress::Listening {
        port: 0,
        tls: false
    }
    .is_valid());
    assert_eq!(
        listening.clone().resolve("10.1.2.3".parse().unwrap()),
        PeerAddress::Native {
            url: "ws://10.1.2.3:7003/".into()
        }
    );
    assert_eq!(
        PeerAddress::Listening {
            port: 443,
            tls: true
        }
        .resolve("2001:db8::1".parse().unwrap()),
        PeerAddress::Native {
            url: "wss://[2001:db8::1]:443/".into()
        }
    );
    assert!(PeerAddress::Native {
        url: "ws://10.1.2.3:7003/".into()
    }
    .is_valid());
    assert_eq!(
        PeerAddress::Browser.resolve("10.1.2.3".parse().unwrap()),
        PeerAddress::Browser
    );
    let json = serde_json::to_string(&listening).unwrap();
    assert_eq!(json, r#"{"kind":"listening","port":7003,"tls":false}"#);
}

#[test]
fn a_list_files_without_a_page_asks_for_the_first() {
    assert_eq!(
        ToTracker::decode(r#"{"type":"list_files"}"#).unwrap(),
        ToTracker::ListFiles {
            after: None,
            limit: None
        }
    );
}
