//! Twin authentication: each tracker proves it holds the shared twin secret without sending it.
//!
//! The dialling tracker sends a nonce (`sync_hello`); the answering tracker replies with its own
//! nonce and an HMAC-SHA256 over both under the secret (`sync_challenge`); the dialler checks it
//! and answers with an HMAC over both under another label (`sync_proof`). Fresh nonces on both
//! sides mean no proof can be replayed, and the labels mean neither side's proof can be
//! reflected as the other's. An on-path attacker on a plain `ws://` link can still relay and
//! then alter the link: across untrusted networks, link the twins over `wss://`.

use mtorrent_shared::tracker::TWIN_NONCE_HEX;
use ring::hmac;

/// Which side of the link a proof speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The tracker that dialled (sends `sync_hello` and `sync_proof`).
    Dialling,
    /// The tracker that answered (sends `sync_challenge`).
    Answering,
}

impl Side {
    fn label(self) -> &'static [u8] {
        match self {
            Side::Dialling => b"mtorrent twin: dialling side\n",
            Side::Answering => b"mtorrent twin: answering side\n",
        }
    }
}

/// A fresh random nonce: [`TWIN_NONCE_HEX`] hex digits.
pub fn new_nonce() -> String {
    hex::encode(rand::random::<[u8; TWIN_NONCE_HEX / 2]>())
}

/// Whether `nonce` has the form of one: exactly [`TWIN_NONCE_HEX`] lowercase hex digits.
pub fn is_nonce(nonce: &str) -> bool {
    nonce.len() == TWIN_NONCE_HEX
        && nonce
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The proof, as `side`, that the sender holds `secret`, for the link whose dialling side chose
/// `dialling_nonce` and answering side `answering_nonce`.
pub fn prove(secret: &str, side: Side, dialling_nonce: &str, answering_nonce: &str) -> String {
    hex::encode(hmac::sign(&key(secret), &signed(side, dialling_nonce, answering_nonce)).as_ref())
}

/// Whether `proof` is [`prove`]'s for these nonces; the comparison takes the same time
/// wherever the first difference is.
pub fn verify(
    secret: &str,
    side: Side,
    dialling_nonce: &str,
    answering_nonce: &str,
    proof: &str,
) -> bool {
    let Ok(tag) = hex::decode(proof) else {
        return false;
    };
    hmac::verify(
        &key(secret),
        &signed(side, dialling_nonce, answering_nonce),
        &tag,
    )
    .is_ok()
}

fn key(secret: &str) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes())
}

fn signed(side: Side, dialling_nonce: &str, answering_nonce: &str) -> Vec<u8> {
    [
        side.label(),
        dialling_nonce.as_bytes(),
        b"\n",
        answering_nonce.as_bytes(),
    ]
    .concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_verifies_only_with_its_secret_side_and_nonces() {
        let (a, b) = (new_nonce(), new_nonce());
        assert!(is_nonce(&a) && is_nonce(&b) && a != b);
        let proof = prove("secret", Side::Answering, &a, &b);
        assert!(verify("secret", Side::Answering, &a, &b, &proof));
        assert!(!verify("other", Side::Answering, &a, &b, &proof));
        // Reflected as the other side's proof, or replayed on another link.
        assert!(!verify("secret", Side::Dialling, &a, &b, &proof));
        assert!(!verify("secret", Side::Answering, &b, &a, &proof));
        assert!(!verify("secret", Side::Answering, &a, &new_nonce(), &proof));
        assert!(!verify("secret", Side::Answering, &a, &b, "not hex"));
        assert!(!verify("secret", Side::Answering, &a, &b, ""));
    }

    #[test]
    fn only_hex_of_the_right_length_is_a_nonce() {
        assert!(!is_nonce(""));
        assert!(!is_nonce(&"a".repeat(TWIN_NONCE_HEX - 1)));
        assert!(!is_nonce(&"A".repeat(TWIN_NONCE_HEX)));
        assert!(!is_nonce(&"g".repeat(TWIN_NONCE_HEX)));
        assert!(is_nonce(&"0".repeat(TWIN_NONCE_HEX)));
    }
}
