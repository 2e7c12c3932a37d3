//! The `.mtorrent` file: what it holds, how it is built, written, parsed and identified.
//!
//! On disk it is JSON:
//!
//! ```json
//! {
//!   "trackers": ["ws://tracker-one:7000/ws", "ws://tracker-two:7000/ws"],
//!   "name": "holiday.mkv",
//!   "size": 1048577,
//!   "piece_size": 524288,
//!   "pieces": "<40 hex characters per piece>"
//! }
//! ```
//!
//! A [`Metainfo`] can only exist in a valid state: [`Metainfo::new`] and [`Metainfo::from_json`]
//! check every rule and report the first broken one as its own [`MetainfoError`] variant.

use serde::Serialize;
use serde_json::{Map, Value};
use sha1::{Digest, Sha1};

use crate::ids::{decode_hex_into, IdParseError, InfoHash, PieceHash};
use crate::piece::{Lengths, PIECE_SIZE};

/// The largest file size accepted: 1 TiB.
pub const MAX_FILE_SIZE: u64 = 1 << 40;

/// The largest `.mtorrent` document accepted, in bytes. A 1 TiB file's hash string is 80 MiB.
pub const MAX_METAINFO_BYTES: usize = 96 * 1024 * 1024;

/// The longest file name accepted, in bytes (the usual filesystem limit).
pub const MAX_NAME_BYTES: usize = 255;

/// Every field a `.mtorrent` document may have.
const DOCUMENT_FIELDS: [&str; 5] = ["trackers", "name", "size", "piece_size", "pieces"];

/// Domain-separation prefix of the info hash's canonical encoding.
const INFO_HASH_DOMAIN: &[u8] = b"mtorrent/1\n";

/// Why a `.mtorrent` is invalid. Each rule has its own variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetainfoError {
    /// The document is larger than [`MAX_METAINFO_BYTES`].
    #[error("the .mtorrent is {size} bytes; the limit is {max}")]
    DocumentTooLarge {
        /// The document's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The document is not valid JSON, or not a JSON object.
    #[error("the .mtorrent is not valid JSON: {0}")]
    Json(String),
    /// A required field is absent.
    #[error("the .mtorrent has no `{0}` field")]
    MissingField(&'static str),
    /// A field the format does not define, refused where only an exact document will do (a
    /// tracker's catalog).
    #[error("the .mtorrent has a field `{0}` that the format does not define")]
    UnknownField(String),
    /// A field holds the wrong kind of JSON value.
    #[error("field `{field}` must be {expected}")]
    WrongType {
        /// The field's name.
        field: &'static str,
        /// What it should hold, in words.
        expected: &'static str,
    },
    /// There are not exactly two tracker URLs.
    #[error("expected 2 tracker URLs, found {0}")]
    TrackerCount(usize),
    /// A tracker URL is not a `ws://` or `wss://` URL with a host.
    #[error("tracker URL {0:?} is not a ws:// or wss:// URL")]
    BadTrackerUrl(String),
    /// The file name is empty.
    #[error("the file name is empty")]
    EmptyName,
    /// The file name contains `/` or `\`, so it would be a path.
    #[error("the file name {0:?} contains a path separator")]
    NameHasSeparator(String),
    /// The file name contains `..`, or is `.`.
    #[error("the file name {0:?} could point outside the destination directory")]
    NameTraversal(String),
    /// The file name contains a NUL or another control character.
    #[error("the file name {0:?} contains a control character")]
    NameHasControl(String),
    /// The file name contains an invisible character or one that changes the text's
    /// direction (bidi overrides, zero-width spaces and joiners): a listed name could then
    /// show another extension than the one it has.
    #[error(
        "the file name {0:?} contains an invisible or direction-changing character, which could disguise it"
    )]
    NameHasInvisible(String),
    /// The file name is longer than [`MAX_NAME_BYTES`].
    #[error("the file name is {0} bytes long; the limit is {MAX_NAME_BYTES}")]
    NameTooLong(usize),
    /// The file size is larger than [`MAX_FILE_SIZE`].
    #[error("the file size {0} bytes exceeds the limit of {MAX_FILE_SIZE} bytes")]
    SizeTooLarge(u64),
    /// The piece size is not [`PIECE_SIZE`].
    #[error("the piece size {0} is not supported; pieces are {PIECE_SIZE} bytes")]
    UnsupportedPieceSize(u64),
    /// The hash string's length does not match the file size.
    #[error("the hash string has {actual} characters, but a {size}-byte file needs {expected}")]
    HashStringLength {
        /// The file size.
        size: u64,
        /// 40 characters per piece.
        expected: usize,
        /// What was found.
        actual: usize,
    },
    /// The hash string has a character that is not a hex digit.
    #[error("the hash string has a non-hex character at position {0}")]
    HashStringCharacter(usize),
    /// The number of piece hashes does not match the file size.
    #[error("a {size}-byte file has {expected} pieces, but {actual} hashes were given")]
    PieceCount {
        /// The file size.
        size: u64,
        /// How many pieces the size implies.
        expected: u32,
        /// How many hashes were given.
        actual: usize,
    },
}

/// A valid `.mtorrent`: two tracker URLs, a file name, a size and one hash per piece.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metainfo {
    trackers: [String; 2],
    name: String,
    lengths: Lengths,
    pieces: Vec<PieceHash>,
    info_hash: InfoHash,
}

#[derive(Serialize)]
struct MetainfoJson<'a> {
    trackers: &'a [String; 2],
    name: &'a str,
    size: u64,
    piece_size: u32,
    pieces: String,
}

impl Metainfo {
    /// Builds a `.mtorrent` from its parts, checking every rule.
    pub fn new(
        trackers: [String; 2],
        name: String,
        size: u64,
        pieces: Vec<PieceHash>,
    ) -> Result<Self, MetainfoError> {
        for url in &trackers {
            validate_tracker_url(url)?;
        }
        validate_name(&name)?;
        let lengths = validate_size(size)?;
        if pieces.len() != lengths.piece_count() as usize {
            return Err(MetainfoError::PieceCount {
                size,
                expected: lengths.piece_count(),
                actual: pieces.len(),
            });
        }
        let info_hash = compute_info_hash(&name, size, &pieces);
        Ok(Self {
            trackers,
            name,
            lengths,
            pieces,
            info_hash,
        })
    }

    /// Parses and validates a `.mtorrent` document.
    pub fn from_json(document: &[u8]) -> Result<Self, MetainfoError> {
        Self::parse(document, false)
    }

    /// Parses and validates a document; with `exact`, a field the format does not define is
    /// refused too.
    fn parse(document: &[u8], exact: bool) -> Result<Self, MetainfoError> {
        if document.len() > MAX_METAINFO_BYTES {
            return Err(MetainfoError::DocumentTooLarge {
                size: document.len(),
                max: MAX_METAINFO_BYTES,
            });
        }
        let value: Value =
            serde_json::from_slice(document).map_err(|e| MetainfoError::Json(e.to_string()))?;
        let Value::Object(fields) = value else {
            return Err(MetainfoError::Json("expected a JSON object".into()));
        };
        let unknown = || {
            fields
                .keys()
                .find(|key| !DOCUMENT_FIELDS.contains(&key.as_str()))
        };
        if let Some(unknown) = exact.then(unknown).flatten() {
            return Err(MetainfoError::UnknownField(
                unknown.chars().take(64).collect(),
            ));
        }
        let trackers = parse_trackers(&fields)?;
        let name = string_field(&fields, "name")?.to_owned();
        let size = u64_field(&fields, "size")?;
        if let Some(piece_size) = fields.get("piece_size") {
            let piece_size = piece_size.as_u64().ok_or(MetainfoError::WrongType {
                field: "piece_size",
                expected: "a whole number",
            })?;
            if piece_size != u64::from(PIECE_SIZE) {
                return Err(MetainfoError::UnsupportedPieceSize(piece_size));
            }
        }
        let hash_string = string_field(&fields, "pieces")?;
        validate_name(&name)?;
        let lengths = validate_size(size)?;
        let pieces = parse_hash_string(hash_string, lengths)?;
        Self::new(trackers, name, size, pieces)
    }

    /// Parses a `.mtorrent` document like [`Metainfo::from_json`], and refuses any field the
    /// format does not define: what a tracker keeps for others must be exactly a document, not
    /// a carrier for other data.
    pub fn from_json_exact(document: &[u8]) -> Result<Self, MetainfoError> {
        Self::parse(document, true)
    }

    /// Writes the `.mtorrent` document (pretty-printed JSON with a trailing newline).
    pub fn to_json(&self) -> String {
        let mut pieces = String::with_capacity(self.pieces.len() * 40);
        for piece in &self.pieces {
            pieces.push_str(&piece.to_hex());
        }
        let json = MetainfoJson {
            trackers: &self.trackers,
            name: &self.name,
            size: self.lengths.total(),
            piece_size: PIECE_SIZE,
            pieces,
        };
        let mut text = serde_json::to_string_pretty(&json).expect("serialising plain data");
        text.push('\n');
        text
    }

    /// The two tracker URLs, tracker 1 first.
    pub fn trackers(&self) -> &[String; 2] {
        &self.trackers
    }

    /// The file name: one path component, safe to join to a destination directory.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file size in bytes.
    pub fn size(&self) -> u64 {
        self.lengths.total()
    }

    /// The piece and block arithmetic for this file.
    pub fn lengths(&self) -> Lengths {
        self.lengths
    }

    /// The expected SHA1 of every piece, in order.
    pub fn piece_hashes(&self) -> &[PieceHash] {
        &self.pieces
    }

    /// The file's identity on the wire.
    ///
    /// SHA1 over `"mtorrent/1\n"`, the name's length (u32, big-endian), the name's UTF-8 bytes,
    /// the size (u64, big-endian), the piece size (u32, big-endian), then the raw 20-byte hash of
    /// every piece. The tracker URLs are not part of it: the same file shared through other
    /// trackers is the same file.
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// Whether `data` is the content of piece `index`.
    pub fn piece_matches(&self, index: crate::ValidPieceIndex, data: &[u8]) -> bool {
        data.len() == self.lengths.piece_length(index) as usize
            && PieceHash::of(data) == self.pieces[index.get() as usize]
    }
}

fn compute_info_hash(name: &str, size: u64, pieces: &[PieceHash]) -> InfoHash {
    let mut hasher = Sha1::new();
    hasher.update(INFO_HASH_DOMAIN);
    hasher.update((name.len() as u32).to_be_bytes());
    hasher.update(name.as_bytes());
    hasher.update(size.to_be_bytes());
    hasher.update(PIECE_SIZE.to_be_bytes());
    for piece in pieces {
        hasher.update(piece.as_bytes());
    }
    InfoHash(hasher.finalize().into())
}

fn validate_tracker_url(url: &str) -> Result<(), MetainfoError> {
    if crate::tracker::is_ws_url(url) {
        Ok(())
    } else {
        Err(MetainfoError::BadTrackerUrl(url.to_owned()))
    }
}

fn validate_name(name: &str) -> Result<(), MetainfoError> {
    if name.is_empty() {
        return Err(MetainfoError::EmptyName);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(MetainfoError::NameTooLong(name.len()));
    }
    if name.contains(['/', '\\']) {
        return Err(MetainfoError::NameHasSeparator(name.to_owned()));
    }
    if name.chars().any(char::is_control) {
        return Err(MetainfoError::NameHasControl(name.to_owned()));
    }
    if name.chars().any(is_invisible) {
        return Err(MetainfoError::NameHasInvisible(name.to_owned()));
    }
    if name == "." || name.contains("..") {
        return Err(MetainfoError::NameTraversal(name.to_owned()));
    }
    Ok(())
}

/// Whether `c` is invisible or changes the direction of the text around it: Unicode's bidi
/// controls and the format characters that show nothing (zero-width spaces and joiners, the
/// word joiner and its kin, the byte order mark, the soft hyphen, tag characters).
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFFB}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

fn validate_size(size: u64) -> Result<Lengths, MetainfoError> {
    if size > MAX_FILE_SIZE {
        return Err(MetainfoError::SizeTooLarge(size));
    }
    Ok(Lengths::new(size).expect("MAX_FILE_SIZE fits in u32 pieces"))
}

fn parse_trackers(fields: &Map<String, Value>) -> Result<[String; 2], MetainfoError> {
    const WRONG: MetainfoError = MetainfoError::WrongType {
        field: "trackers",
        expected: "a list of two URL strings",
    };
    let list = fields
        .get("trackers")
        .ok_or(MetainfoError::MissingField("trackers"))?
        .as_array()
        .ok_or(WRONG)?;
    let urls = list
        .iter()
        .map(|url| url.as_str().map(str::to_owned).ok_or(WRONG))
        .collect::<Result<Vec<_>, _>>()?;
    <[String; 2]>::try_from(urls).map_err(|urls| MetainfoError::TrackerCount(urls.len()))
}

fn string_field<'a>(
    fields: &'a Map<String, Value>,
    field: &'static str,
) -> Result<&'a str, MetainfoError> {
    fields
        .get(field)
        .ok_or(MetainfoError::MissingField(field))?
        .as_str()
        .ok_or(MetainfoError::WrongType {
            field,
            expected: "a string",
        })
}

fn u64_field(fields: &Map<String, Value>, field: &'static str) -> Result<u64, MetainfoError> {
    fields
        .get(field)
        .ok_or(MetainfoError::MissingField(field))?
        .as_u64()
        .ok_or(MetainfoError::WrongType {
            field,
            expected: "a whole number of bytes",
        })
}

fn parse_hash_string(text: &str, lengths: Lengths) -> Result<Vec<PieceHash>, MetainfoError> {
    let expected = lengths.piece_count() as usize * 40;
    if text.len() != expected {
        return Err(MetainfoError::HashStringLength {
            size: lengths.total(),
            expected,
            actual: text.chars().count(),
        });
    }
    text.as_bytes()
        .chunks_exact(40)
        .enumerate()
        .map(|(i, chunk)| {
            let mut hash = [0u8; 20];
            decode_hex_into(chunk, &mut hash).map_err(|e| match e {
                IdParseError::Character(at) => MetainfoError::HashStringCharacter(i * 40 + at),
                IdParseError::Length(_) => unreachable!("chunks are 40 bytes"),
            })?;
            Ok(PieceHash(hash))
        })
        .collect()
}

/// Streams a file's bytes, in chunks of any size, into its piece hashes with bounded memory.
///
/// Call [`update`](Self::update) with consecutive chunks of the file, then
/// [`finish`](Self::finish). Memory use does not depend on the file's length beyond the 20 bytes
/// kept per piece.
#[derive(Debug, Clone, Default)]
pub struct PieceHasher {
    current: Sha1,
    filled: u32,
    total: u64,
    hashes: Vec<PieceHash>,
}

/// The result of hashing a whole file: its size and the hash of every piece.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PieceHashes {
    /// The file size in bytes.
    pub size: u64,
    /// The SHA1 of every piece, in order.
    pub hashes: Vec<PieceHash>,
}

impl PieceHasher {
    /// A hasher that has seen no bytes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next chunk of the file. In WebAssembly, runs of four whole pieces are hashed
    /// four at a time ([`crate::sha1_x4`]); feed large chunks to benefit.
    pub fn update(&mut self, data: &[u8]) {
        self.update_with(data, cfg!(target_arch = "wasm32"));
    }

    fn update_with(&mut self, mut data: &[u8], four_at_once: bool) {
        const PIECE: usize = PIECE_SIZE as usize;
        self.total += data.len() as u64;
        while !data.is_empty() {
            if four_at_once && self.filled == 0 && data.len() >= 4 * PIECE {
                let (four, rest) = data.split_at(4 * PIECE);
                let pieces = [0, 1, 2, 3].map(|i| &four[i * PIECE..(i + 1) * PIECE]);
                self.hashes
                    .extend(crate::sha1_x4::sha1_x4(pieces).map(PieceHash));
                data = rest;
                continue;
            }
            let room = (PIECE_SIZE - self.filled) as usize;
            let (now, rest) = data.split_at(room.min(data.len()));
            self.current.update(now);
            self.filled += now.len() as u32;
            if self.filled == PIECE_SIZE {
                self.finish_piece();
            }
            data = rest;
        }
    }

    /// How many bytes have been fed so far.
    pub fn bytes_hashed(&self) -> u64 {
        self.total
    }

    /// Ends the file: hashes the short last piece, if any, and returns every piece's hash.
    pub fn finish(mut self) -> PieceHashes {
        if self.filled > 0 {
            self.finish_piece();
        }
        PieceHashes {
            size: self.total,
            hashes: self.hashes,
        }
    }

    fn finish_piece(&mut self) {
        let digest = std::mem::take(&mut self.current).finalize();
        self.hashes.push(PieceHash(digest.into()));
        self.filled = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hashing_four_pieces_at_once_gives_the_same_hashes() {
        let data: Vec<u8> = (0..9 * PIECE_SIZE as usize + 1234)
            .map(|i| (i * 131 % 251) as u8)
            .collect();
        for chunk in [1usize << 20, 4 << 20, 5 << 20 | 77, 64 << 20] {
            let mut one = PieceHasher::new();
            let mut four = PieceHasher::new();
            for part in data.chunks(chunk) {
                one.update_with(part, false);
                four.update_with(part, true);
            }
            assert_eq!(four.finish(), one.finish(), "chunks of {chunk}");
        }
    }

    #[test]
    fn an_exact_document_has_no_field_the_format_does_not_define() {
        let meta = Metainfo::new(trackers(), "a.bin".into(), 3, vec![PieceHash([1; 20])]).unwrap();
        let document = meta.to_json();
        assert_eq!(
            Metainfo::from_json_exact(document.as_bytes()).unwrap(),
            meta
        );
        let padded = document.replacen('{', r#"{"padding": "xxxxxxxx","#, 1);
        assert_eq!(
            Metainfo::from_json(padded.as_bytes()).unwrap(),
            meta,
            "lenient parse"
        );
        assert_eq!(
            Metainfo::from_json_exact(padded.as_bytes()),
            Err(MetainfoError::UnknownField("padding".into()))
        );
    }

    fn trackers() -> [String; 2] {
        [
            "ws://127.0.0.1:7000/ws".into(),
            "wss://t2.example:443/ws".into(),
        ]
    }

    fn sample(size: usize) -> Vec<u8> {
        (0..size).map(|i| (i * 31 % 251) as u8).collect()
    }

    fn build(name: &str, data: &[u8]) -> Metainfo {
        let mut hasher = PieceHasher::new();
        hasher.update(data);
        let hashes = hasher.finish();
        Metainfo::new(trackers(), name.into(), hashes.size, hashes.hashes).unwrap()
    }

    fn document(edit: impl FnOnce(&mut Map<String, Value>)) -> Vec<u8> {
        let meta = build("a.bin", &sample(1000));
        let mut value: Map<String, Value> = serde_json::from_str(&meta.to_json()).unwrap();
        edit(&mut value);
        serde_json::to_vec(&value).unwrap()
    }

    #[test]
    fn json_round_trip_keeps_everything() {
        let meta = build("movie.mkv", &sample(PIECE_SIZE as usize * 2 + 5));
        let parsed = Metainfo::from_json(meta.to_json().as_bytes()).unwrap();
        assert_eq!(parsed, meta);
        assert_eq!(parsed.lengths().piece_count(), 3);
    }

    #[test]
    fn empty_file_has_an_empty_hash_string() {
        let meta = build("empty", b"");
        assert_eq!(meta.size(), 0);
        assert!(meta.piece_hashes().is_empty());
        assert!(meta.to_json().contains("\"pieces\": \"\""));
        assert_eq!(
            Metainfo::from_json(meta.to_json().as_bytes()).unwrap(),
            meta
        );
    }

    #[test]
    fn info_hash_ignores_trackers_but_not_content() {
        let a = build("f", b"hello");
        let b = Metainfo::new(
            ["ws://other:1/".into(), "ws://other:2/".into()],
            "f".into(),
            a.size(),
            a.piece_hashes().to_vec(),
        )
        .unwrap();
        assert_eq!(a.info_hash(), b.info_hash());
        assert_ne!(a.info_hash(), build("g", b"hello").info_hash());
        assert_ne!(a.info_hash(), build("f", b"hellp").info_hash());
    }

    #[test]
    fn info_hash_is_stable() {
        // Computed independently (Python hashlib over the documented encoding); a change here
        // changes every file's identity.
        assert_eq!(
            build("hello.txt", b"hello world\n").info_hash().to_hex(),
            "fc09aaf1b258327aa01db8678618277473805064"
        );
    }

    #[test]
    fn rejects_bad_json() {
        assert!(matches!(
            Metainfo::from_json(b"{"),
            Err(MetainfoError::Json(_))
        ));
        assert!(matches!(
            Metainfo::from_json(b"[1]"),
            Err(MetainfoError::Json(_))
        ));
        assert!(matches!(
            Metainfo::from_json(b""),
            Err(MetainfoError::Json(_))
        ));
    }

    #[test]
    fn rejects_each_missing_field() {
        for field in ["trackers", "name", "size", "pieces"] {
            let doc = document(|m| {
                m.remove(field);
            });
            assert_eq!(
                Metainfo::from_json(&doc),
                Err(MetainfoError::MissingField(field))
            );
        }
    }

    #[test]
    fn rejects_wrong_types() {
        let doc = document(|m| {
            m.insert("size".into(), Value::from("12"));
        });
        assert!(matches!(
            Metainfo::from_json(&doc),
            Err(MetainfoError::WrongType { field: "size", .. })
        ));
        let doc = document(|m| {
            m.insert("size".into(), Value::from(-1));
        });
        assert!(matches!(
            Metainfo::from_json(&doc),
            Err(MetainfoError::WrongType { field: "size", .. })
        ));
        let doc = document(|m| {
            m.insert("trackers".into(), Value::from("ws://a/"));
        });
        assert!(matches!(
            Metainfo::from_json(&doc),
            Err(MetainfoError::WrongType {
                field: "trackers",
                ..
            })
        ));
    }

    #[test]
    fn accepts_names_in_any_script() {
        for name in [
            "résumé.pdf",
            "日本語.txt",
            "photo 😀.png",
            "שלום.txt",
            "a b-c_d.tar.gz",
        ] {
            let doc = document(|m| {
                m.insert("name".into(), Value::from(name));
            });
            assert!(Metainfo::from_json(&doc).is_ok(), "name {name:?}");
        }
    }

    #[test]
    fn rejects_bad_names() {
        type Expected = fn(&str) -> MetainfoError;
        let cases: [(&str, Expected); 15] = [
            ("", |_| MetainfoError::EmptyName),
            ("a/b", |n| MetainfoError::NameHasSeparator(n.into())),
            ("../etc/passwd", |n| {
                MetainfoError::NameHasSeparator(n.into())
            }),
            ("a\\b", |n| MetainfoError::NameHasSeparator(n.into())),
            ("..", |n| MetainfoError::NameTraversal(n.into())),
            (".", |n| MetainfoError::NameTraversal(n.into())),
            ("x..y", |n| MetainfoError::NameTraversal(n.into())),
            ("a\0b", |n| MetainfoError::NameHasControl(n.into())),
            ("a\nb", |n| MetainfoError::NameHasControl(n.into())),
            // "invoice_\u{202E}fdp.exe" shows as "invoice_exe.pdf".
            ("invoice_\u{202E}fdp.exe", |n| {
                MetainfoError::NameHasInvisible(n.into())
            }),
            ("a\u{2066}b\u{2069}", |n| {
                MetainfoError::NameHasInvisible(n.into())
            }),
            ("photo\u{200B}.jpg", |n| {
                MetainfoError::NameHasInvisible(n.into())
            }),
            ("x\u{200D}y", |n| MetainfoError::NameHasInvisible(n.into())),
            ("\u{FEFF}bom", |n| MetainfoError::NameHasInvisible(n.into())),
            ("tag\u{E0041}", |n| {
                MetainfoError::NameHasInvisible(n.into())
            }),
        ];
        for (name, error) in cases {
            let doc = document(|m| {
                m.insert("name".into(), Value::from(name));
            });
            assert_eq!(Metainfo::from_json(&doc), Err(error(name)), "name {name:?}");
        }
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        let doc = document(|m| {
            m.insert("name".into(), Value::from(long.as_str()));
        });
        assert_eq!(
            Metainfo::from_json(&doc),
            Err(MetainfoError::NameTooLong(MAX_NAME_BYTES + 1))
        );
    }

    #[test]
    fn rejects_absurd_sizes_before_looking_at_hashes() {
        for size in [MAX_FILE_SIZE + 1, u64::MAX] {
            let doc = document(|m| {
                m.insert("size".into(), Value::from(size));
            });
            assert_eq!(
                Metainfo::from_json(&doc),
                Err(MetainfoError::SizeTooLarge(size))
            );
        }
    }

    #[test]
    fn rejects_hash_strings_that_do_not_fit_the_size() {
        let doc = document(|m| {
            m.insert("size".into(), Value::from(PIECE_SIZE + 1));
        });
        assert_eq!(
            Metainfo::from_json(&doc),
            Err(MetainfoError::HashStringLength {
                size: u64::from(PIECE_SIZE) + 1,
                expected: 80,
                actual: 40
            })
        );
        let doc = document(|m| {
            let mut text = m["pieces"].as_str().unwrap().to_owned();
            text.replace_range(13..14, "x");
            m.insert("pieces".into(), Value::from(text));
        });
        assert_eq!(
            Metainfo::from_json(&doc),
            Err(MetainfoError::HashStringCharacter(13))
        );
    }

    #[test]
    fn rejects_bad_trackers_and_piece_sizes() {
        let doc = document(|m| {
            m.insert("trackers".into(), serde_json::json!(["ws://a/"]));
        });
        assert_eq!(
            Metainfo::from_json(&doc),
            Err(MetainfoError::TrackerCount(1))
        );
        for url in ["http://a/", "ws://", "ws:///x", "ws://a b/"] {
            let doc = document(|m| {
                m.insert("trackers".into(), serde_json::json!(["ws://a/", url]));
            });
            assert_eq!(
                Metainfo::from_json(&doc),
                Err(MetainfoError::BadTrackerUrl(url.into())),
                "url {url}"
            );
        }
        let doc = document(|m| {
            m.insert("piece_size".into(), Value::from(16384));
        });
        assert_eq!(
            Metainfo::from_json(&doc),
            Err(MetainfoError::UnsupportedPieceSize(16384))
        );
    }

    #[test]
    fn new_checks_piece_count() {
        assert_eq!(
            Metainfo::new(trackers(), "f".into(), 10, vec![]),
            Err(MetainfoError::PieceCount {
                size: 10,
                expected: 1,
                actual: 0
            })
        );
    }

    #[test]
    fn piece_matches_checks_length_and_hash() {
        let data = sample(PIECE_SIZE as usize + 10);
        let meta = build("f", &data);
        let last = meta.lengths().validate_piece_index(1).unwrap();
        assert!(meta.piece_matches(last, &data[PIECE_SIZE as usize..]));
        assert!(!meta.piece_matches(last, &data[PIECE_SIZE as usize + 1..]));
        let first = meta.lengths().validate_piece_index(0).unwrap();
        assert!(!meta.piece_matches(first, &data[1..=PIECE_SIZE as usize]));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Chunking never changes the result: any split of the input gives the same hashes as
        /// hashing each piece on its own.
        #[test]
        fn hashing_is_independent_of_chunking(
            size in 0usize..(3 * PIECE_SIZE as usize),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let data = sample(size);
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(size + 1)).collect();
            points.push(0);
            points.push(size);
            points.sort_unstable();
            let mut hasher = PieceHasher::new();
            for pair in points.windows(2) {
                hasher.update(&data[pair[0]..pair[1]]);
            }
            let result = hasher.finish();
            let expected: Vec<PieceHash> =
                data.chunks(PIECE_SIZE as usize).map(PieceHash::of).collect();
            prop_assert_eq!(result.size, size as u64);
            prop_assert_eq!(result.hashes, expected);
        }
    }
}
