//! Twenty-byte identifiers: info hashes, peer ids and piece hashes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a hex identifier could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdParseError {
    /// The text is not exactly 40 characters long.
    #[error("expected 40 hex characters, found {0}")]
    Length(usize),
    /// The text has a character that is not a hex digit.
    #[error("not a hex digit at position {0}")]
    Character(usize),
}

macro_rules! id20 {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub [u8; 20]);

        impl $name {
            /// The identifier's 20 raw bytes.
            pub fn as_bytes(&self) -> &[u8; 20] {
                &self.0
            }

            /// The identifier as 40 lowercase hex characters.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// Parses 40 hex characters (either case).
            pub fn from_hex(text: &str) -> Result<Self, IdParseError> {
                let mut out = [0u8; 20];
                decode_hex_into(text.as_bytes(), &mut out)?;
                Ok(Self(out))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::from_hex(s)
            }
        }

        impl From<[u8; 20]> for $name {
            fn from(bytes: [u8; 20]) -> Self {
                Self(bytes)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.to_hex())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                Self::from_hex(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

id20! {
    /// A file's identity on the wire: SHA1 over the canonical encoding of its `.mtorrent`'s
    /// name, size, piece size and piece hashes (see [`crate::Metainfo::info_hash`]).
    InfoHash
}

id20! {
    /// A peer's self-chosen identity, unique per running peer.
    PeerId
}

id20! {
    /// The SHA1 of one piece's bytes.
    PieceHash
}

impl PieceHash {
    /// Hashes one piece's bytes.
    pub fn of(data: &[u8]) -> Self {
        use sha1::{Digest, Sha1};
        Self(Sha1::digest(data).into())
    }
}

/// Decodes hex text into `out`, which must be exactly half as long as `text`.
pub(crate) fn decode_hex_into(text: &[u8], out: &mut [u8]) -> Result<(), IdParseError> {
    if text.len() != out.len() * 2 {
        return Err(IdParseError::Length(text.len()));
    }
    for (i, pair) in text.chunks_exact(2).enumerate() {
        let hi = hex_value(pair[0]).ok_or(IdParseError::Character(2 * i))?;
        let lo = hex_value(pair[1]).ok_or(IdParseError::Character(2 * i + 1))?;
        out[i] = hi << 4 | lo;
    }
    Ok(())
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_accepts_both_cases() {
        let id = PeerId([0xab; 20]);
        assert_eq!(PeerId::from_hex(&id.to_hex()), Ok(id));
        assert_eq!(PeerId::from_hex(&id.to_hex().to_uppercase()), Ok(id));
    }

    #[test]
    fn hex_rejects_wrong_length_and_characters() {
        assert_eq!(InfoHash::from_hex("abc"), Err(IdParseError::Length(3)));
        let mut text = "0".repeat(40);
        text.replace_range(7..8, "g");
        assert_eq!(InfoHash::from_hex(&text), Err(IdParseError::Character(7)));
    }

    #[test]
    fn serde_uses_hex_strings() {
        let id = InfoHash([1; 20]);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{}\"", "01".repeat(20)));
        assert_eq!(serde_json::from_str::<InfoHash>(&json).unwrap(), id);
        assert!(serde_json::from_str::<InfoHash>("\"zz\"").is_err());
    }

    #[test]
    fn piece_hash_of_empty_input_is_sha1_of_nothing() {
        assert_eq!(
            PieceHash::of(b"").to_hex(),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
    }
}
