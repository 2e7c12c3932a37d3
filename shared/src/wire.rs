//! Peer-wire messages and their binary codec.
//!
//! # Framing
//!
//! Every message is one frame: a `u32` big-endian length, then that many bytes, of which the
//! first is the message's tag. Over a WebSocket each binary WebSocket message carries exactly one
//! frame ([`Message::decode_frame`]); over a byte stream frames follow each other
//! ([`FrameDecoder`]). All integers are big-endian. Piece data travels as raw bytes, never
//! encoded.
//!
//! | tag | message | payload after the tag |
//! |---|---|---|
//! | 0 | KeepAlive | — |
//! | 1 | Handshake | `"mtorrent"` (8 bytes), version `u16`, info hash (20), peer id (20), max requests `u16` |
//! | 2 | Choke | — |
//! | 3 | Unchoke | — |
//! | 4 | Interested | — |
//! | 5 | NotInterested | — |
//! | 6 | Have | piece `u32` |
//! | 7 | Bitfield | one bit per piece, MSB first (see [`crate::Bitfield`]) |
//! | 8 | Request | piece `u32`, offset `u32`, length `u32` |
//! | 9 | Piece | piece `u32`, offset `u32`, then the block's bytes |
//! | 10 | Cancel | piece `u32`, offset `u32`, length `u32` |
//! | 11 | Reject | piece `u32`, offset `u32`, length `u32` |
//!
//! A frame longer than [`MAX_FRAME_LEN`] is refused as soon as its length prefix is seen, before
//! anything is buffered. Requests and pieces carry at most [`BLOCK_SIZE`] bytes.
//!
//! # Flow control
//!
//! 1. Each side sends a Handshake first, then a Bitfield of the pieces it has verified. The
//!    Handshake says how many requests the sender accepts outstanding at once (`max_requests`).
//! 2. Both sides start *choked* and *not interested*. A side that lacks pieces the other has sends
//!    Interested; the uploader sends Unchoke to the interested peers it is willing to serve.
//! 3. While unchoked, the downloader sends Requests, never more than the uploader's
//!    `max_requests` outstanding; the uploader answers each with a Piece, or with a Reject (out
//!    of range, unknown or unverified piece, too many outstanding), so a request never hangs.
//! 4. Choke drops every outstanding request of that peer without a reply; Cancel withdraws one
//!    (a Piece may still cross it). Have announces each newly verified piece. KeepAlive keeps an
//!    idle connection open.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::ids::{InfoHash, PeerId};
use crate::metainfo::MAX_FILE_SIZE;
use crate::piece::{BLOCK_SIZE, PIECE_SIZE};

/// The protocol version this code speaks. Version 2 has 256 KiB blocks (version 1 had 64 KiB):
/// peers of different versions refuse each other at the handshake, with a clear error, rather
/// than failing on each other's blocks.
pub const PROTOCOL_VERSION: u16 = 2;

/// The first bytes of a Handshake's payload: anything else is not an mtorrent peer.
pub const HANDSHAKE_MAGIC: [u8; 8] = *b"mtorrent";

/// The largest bitfield: one bit per piece of the largest file allowed.
pub const MAX_BITFIELD_BYTES: usize = (MAX_FILE_SIZE / PIECE_SIZE as u64 / 8) as usize;

/// The largest frame body (tag and payload, without the length prefix): a full bitfield, or
/// a Piece carrying a whole block.
pub const MAX_FRAME_LEN: usize = {
    let bitfield = 1 + MAX_BITFIELD_BYTES;
    let piece = 1 + 4 + 4 + BLOCK_SIZE as usize;
    if bitfield > piece {
        bitfield
    } else {
        piece
    }
};

const LEN_PREFIX: usize = 4;
const HANDSHAKE_LEN: usize = 8 + 2 + 20 + 20 + 2;
const PIECE_HEADER_LEN: usize = 8;

/// A peer-wire message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Keeps an idle connection open.
    KeepAlive,
    /// The first message on a connection: who we are and which file we talk about.
    Handshake(Handshake),
    /// The sender will not serve the receiver's requests; outstanding ones are dropped.
    Choke,
    /// The sender will serve the receiver's requests.
    Unchoke,
    /// The sender wants pieces the receiver has.
    Interested,
    /// The sender wants nothing the receiver has.
    NotInterested,
    /// The sender has verified this piece.
    Have {
        /// The piece index.
        piece: u32,
    },
    /// The pieces the sender has, in wire form; validated against the piece count by
    /// [`crate::Bitfield::from_wire`].
    Bitfield(Bytes),
    /// Asks for one block.
    Request(BlockRequest),
    /// One block's bytes.
    Piece {
        /// The piece index.
        piece: u32,
        /// Byte offset within the piece.
        offset: u32,
        /// The block's bytes: 1 to [`BLOCK_SIZE`] of them.
        data: Bytes,
    },
    /// Withdraws a request.
    Cancel(BlockRequest),
    /// Refuses a request, so the requester can ask elsewhere at once.
    Reject(BlockRequest),
}

/// The Handshake's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    /// The sender's protocol version.
    pub version: u16,
    /// The file the connection is about.
    pub info_hash: InfoHash,
    /// The sender's peer id.
    pub peer_id: PeerId,
    /// How many requests the sender accepts outstanding at once (at least 1).
    pub max_requests: u16,
}

/// A block named by piece, offset and length, as in Request, Cancel and Reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockRequest {
    /// The piece index.
    pub piece: u32,
    /// Byte offset within the piece.
    pub offset: u32,
    /// Length in bytes: 1 to [`BLOCK_SIZE`].
    pub length: u32,
}

impl From<crate::BlockRef> for BlockRequest {
    fn from(block: crate::BlockRef) -> Self {
        Self {
            piece: block.piece.get(),
            offset: block.offset,
            length: block.length,
        }
    }
}

/// Why bytes are not a valid peer-wire message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The length prefix announces more than [`MAX_FRAME_LEN`] bytes.
    #[error("frame of {len} bytes exceeds the limit of {MAX_FRAME_LEN}")]
    Oversized {
        /// The announced length.
        len: usize,
    },
    /// The length prefix is zero: a frame has at least its tag.
    #[error("empty frame")]
    Empty,
    /// The input ends before the frame does.
    #[error("truncated frame: {needed} bytes needed, {available} available")]
    Truncated {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes there are.
        available: usize,
    },
    /// Bytes follow the frame where none may.
    #[error("{0} unexpected bytes after the frame")]
    TrailingBytes(usize),
    /// The tag is not a known message.
    #[error("unknown message tag {0}")]
    UnknownTag(u8),
    /// A message's payload has the wrong size.
    #[error("{message} payload is {actual} bytes, expected {expected}")]
    BadPayloadLength {
        /// The message kind.
        message: &'static str,
        /// The size it must have.
        expected: usize,
        /// The size it has.
        actual: usize,
    },
    /// A Handshake without the mtorrent magic: not an mtorrent peer.
    #[error("not an mtorrent peer (bad handshake magic)")]
    BadMagic,
    /// A Handshake of a protocol version this code does not speak.
    #[error("unsupported protocol version {0} (this peer speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion(u16),
    /// A Handshake that accepts no requests at all.
    #[error("handshake accepts zero outstanding requests")]
    ZeroMaxRequests,
    /// A block length of zero or above [`BLOCK_SIZE`].
    #[error("block length {0} is not between 1 and {BLOCK_SIZE}")]
    BadBlockLength(usize),
}

mod tag {
    pub const KEEP_ALIVE: u8 = 0;
    pub const HANDSHAKE: u8 = 1;
    pub const CHOKE: u8 = 2;
    pub const UNCHOKE: u8 = 3;
    pub const INTERESTED: u8 = 4;
    pub const NOT_INTERESTED: u8 = 5;
    pub const HAVE: u8 = 6;
    pub const BITFIELD: u8 = 7;
    pub const REQUEST: u8 = 8;
    pub const PIECE: u8 = 9;
    pub const CANCEL: u8 = 10;
    pub const REJECT: u8 = 11;
}

impl Message {
    /// The size of the encoded frame, length prefix included.
    pub fn encoded_len(&self) -> usize {
        LEN_PREFIX + 1 + self.payload_len()
    }

    fn payload_len(&self) -> usize {
        match self {
            Message::KeepAlive
            | Message::Choke
            | Message::Unchoke
            | Message::Interested
            | Message::NotInterested => 0,
            Message::Handshake(_) => HANDSHAKE_LEN,
            Message::Have { .. } => 4,
            Message::Bitfield(bits) => bits.len(),
            Message::Request(_) | Message::Cancel(_) | Message::Reject(_) => 12,
            Message::Piece { data, .. } => PIECE_HEADER_LEN + data.len(),
        }
    }

    /// Appends the encoded frame to `out`.
    ///
    /// # Panics
    ///
    /// If the message could never be decoded: a bitfield longer than [`MAX_BITFIELD_BYTES`] or
    /// piece data longer than [`BLOCK_SIZE`]. Both are programming errors of the sender.
    pub fn encode(&self, out: &mut impl BufMut) {
        if let Message::Piece {
            piece,
            offset,
            data,
        } = self
        {
            encode_piece_header(*piece, *offset, data.len(), out);
            out.put_slice(data);
            return;
        }
        let payload = self.payload_len();
        assert!(payload < MAX_FRAME_LEN, "bitfield too large to encode");
        out.put_u32((1 + payload) as u32);
        match self {
            Message::KeepAlive => out.put_u8(tag::KEEP_ALIVE),
            Message::Choke => out.put_u8(tag::CHOKE),
            Message::Unchoke => out.put_u8(tag::UNCHOKE),
            Message::Interested => out.put_u8(tag::INTERESTED),
            Message::NotInterested => out.put_u8(tag::NOT_INTERESTED),
            Message::Handshake(h) => {
                out.put_u8(tag::HANDSHAKE);
                out.put_slice(&HANDSHAKE_MAGIC);
                out.put_u16(h.version);
                out.put_slice(h.info_hash.as_bytes());
                out.put_slice(h.peer_id.as_bytes());
                out.put_u16(h.max_requests);
            }
            Message::Have { piece } => {
                out.put_u8(tag::HAVE);
                out.put_u32(*piece);
            }
            Message::Bitfield(bits) => {
                out.put_u8(tag::BITFIELD);
                out.put_slice(bits);
            }
            Message::Request(r) => encode_block_request(tag::REQUEST, r, out),
            Message::Cancel(r) => encode_block_request(tag::CANCEL, r, out),
            Message::Reject(r) => encode_block_request(tag::REJECT, r, out),
            Message::Piece { .. } => unreachable!("handled above"),
        }
    }

    /// The encoded frame as one buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut out);
        out.freeze()
    }

    /// Decodes exactly one whole frame, length prefix included, as carried by one WebSocket
    /// binary message. Piece and bitfield bytes are slices of `frame`, not copies.
    pub fn decode_frame(frame: Bytes) -> Result<Message, WireError> {
        let body_len = frame_body_len(&frame)?.ok_or(WireError::Truncated {
            needed: LEN_PREFIX,
            available: frame.len(),
        })?;
        let total = LEN_PREFIX + body_len;
        if frame.len() < total {
            return Err(WireError::Truncated {
                needed: total,
                available: frame.len(),
            });
        }
        if frame.len() > total {
            return Err(WireError::TrailingBytes(frame.len() - total));
        }
        decode_body(frame.slice(LEN_PREFIX..))
    }
}

/// Appends the frame header of a Piece message carrying `data_len` bytes; the caller appends
/// the data itself, so a block can go from its buffer to the socket without an extra copy.
///
/// # Panics
///
/// If `data_len` is zero or above [`BLOCK_SIZE`].
pub fn encode_piece_header(piece: u32, offset: u32, data_len: usize, out: &mut impl BufMut) {
    assert!(
        (1..=BLOCK_SIZE as usize).contains(&data_len),
        "piece data must be 1 to BLOCK_SIZE bytes"
    );
    out.put_u32((1 + PIECE_HEADER_LEN + data_len) as u32);
    out.put_u8(tag::PIECE);
    out.put_u32(piece);
    out.put_u32(offset);
}

/// The size of a Piece frame's header, length prefix included: what
/// [`encode_piece_header`] writes.
pub const PIECE_FRAME_HEADER_LEN: usize = LEN_PREFIX + 1 + PIECE_HEADER_LEN;

/// Which block a Piece frame carries, read from its header alone: its data is the rest of the
/// frame, from byte [`PIECE_FRAME_HEADER_LEN`] on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PieceHeader {
    /// The piece index, as sent (not yet checked against the file).
    pub piece: u32,
    /// The block's offset in the piece, as sent.
    pub offset: u32,
    /// How many data bytes follow the header.
    pub data_len: usize,
}

/// The header of a well-formed Piece frame that is `frame_len` bytes long in all and starts
/// with `head`; `None` for any other frame, which [`Message::decode_frame`] then decodes (or
/// refuses). Lets a driver copy a block once, from where it arrived (a browser's
/// `ArrayBuffer`, say) to where it belongs: `Some(header)` exactly when `decode_frame` would
/// give a Piece with that block and the frame's bytes after the header as its data.
pub fn peek_piece_frame(head: &[u8], frame_len: usize) -> Option<PieceHeader> {
    let head = head.get(..PIECE_FRAME_HEADER_LEN)?;
    let field = |at: usize| u32::from_be_bytes(head[at..at + 4].try_into().expect("4 bytes"));
    let body_len = field(0) as usize;
    let data_len = frame_len.checked_sub(PIECE_FRAME_HEADER_LEN)?;
    let well_formed = head[LEN_PREFIX] == tag::PIECE
        && body_len <= MAX_FRAME_LEN
        && LEN_PREFIX + body_len == frame_len
        && check_block_length(data_len).is_ok();
    well_formed.then(|| PieceHeader {
        piece: field(LEN_PREFIX + 1),
        offset: field(LEN_PREFIX + 5),
        data_len,
    })
}

fn encode_block_request(tag: u8, r: &BlockRequest, out: &mut impl BufMut) {
    out.put_u8(tag);
    out.put_u32(r.piece);
    out.put_u32(r.offset);
    out.put_u32(r.length);
}

/// Reads the length prefix: `Ok(None)` if fewer than 4 bytes are there.
fn frame_body_len(buf: &[u8]) -> Result<Option<usize>, WireError> {
    let Some(prefix) = buf.get(..LEN_PREFIX) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(prefix.try_into().expect("4 bytes")) as usize;
    match len {
        0 => Err(WireError::Empty),
        len if len > MAX_FRAME_LEN => Err(WireError::Oversized { len }),
        len => Ok(Some(len)),
    }
}

/// Decodes a frame body: tag and payload, exactly.
fn decode_body(mut body: Bytes) -> Result<Message, WireError> {
    let tag = body.get_u8();
    let expect_len = |message: &'static str, expected: usize, body: &Bytes| {
        if body.len() == expected {
            Ok(())
        } else {
            Err(WireError::BadPayloadLength {
                message,
                expected,
                actual: body.len(),
            })
        }
    };
    let message = match tag {
        tag::KEEP_ALIVE => empty("KeepAlive", &body, Message::KeepAlive)?,
        tag::CHOKE => empty("Choke", &body, Message::Choke)?,
        tag::UNCHOKE => empty("Unchoke", &body, Message::Unchoke)?,
        tag::INTERESTED => empty("Interested", &body, Message::Interested)?,
        tag::NOT_INTERESTED => empty("NotInterested", &body, Message::NotInterested)?,
        tag::HANDSHAKE => {
            expect_len("Handshake", HANDSHAKE_LEN, &body)?;
            Message::Handshake(decode_handshake(&mut body)?)
        }
        tag::HAVE => {
            expect_len("Have", 4, &body)?;
            Message::Have {
                piece: body.get_u32(),
            }
        }
        tag::BITFIELD => Message::Bitfield(body),
        tag::REQUEST => Message::Request(decode_block_request("Request", &mut body)?),
        tag::CANCEL => Message::Cancel(decode_block_request("Cancel", &mut body)?),
        tag::REJECT => Message::Reject(decode_block_request("Reject", &mut body)?),
        tag::PIECE => {
            if body.len() < PIECE_HEADER_LEN {
                return Err(WireError::BadPayloadLength {
                    message: "Piece",
                    expected: PIECE_HEADER_LEN,
                    actual: body.len(),
                });
            }
            let piece = body.get_u32();
            let offset = body.get_u32();
            check_block_length(body.len())?;
            Message::Piece {
                piece,
                offset,
                data: body,
            }
        }
        unknown => return Err(WireError::UnknownTag(unknown)),
    };
    Ok(message)
}

fn empty(message: &'static str, body: &Bytes, value: Message) -> Result<Message, WireError> {
    if body.is_empty() {
        Ok(value)
    } else {
        Err(WireError::BadPayloadLength {
            message,
            expected: 0,
            actual: body.len(),
        })
    }
}

fn decode_handshake(body: &mut Bytes) -> Result<Handshake, WireError> {
    if body[..8] != HANDSHAKE_MAGIC {
        return Err(WireError::BadMagic);
    }
    body.advance(8);
    let version = body.get_u16();
    if version != PROTOCOL_VERSION {
        return Err(WireError::UnsupportedVersion(version));
    }
    let mut info_hash = [0; 20];
    body.copy_to_slice(&mut info_hash);
    let mut peer_id = [0; 20];
    body.copy_to_slice(&mut peer_id);
    let max_requests = body.get_u16();
    if max_requests == 0 {
        return Err(WireError::ZeroMaxRequests);
    }
    Ok(Handshake {
        version,
        info_hash: InfoHash(info_hash),
        peer_id: PeerId(peer_id),
        max_requests,
    })
}

fn decode_block_request(
    message: &'static str,
    body: &mut Bytes,
) -> Result<BlockRequest, WireError> {
    if body.len() != 12 {
        return Err(WireError::BadPayloadLength {
            message,
            expected: 12,
            actual: body.len(),
        });
    }
    let request = BlockRequest {
        piece: body.get_u32(),
        offset: body.get_u32(),
        length: body.get_u32(),
    };
    check_block_length(request.length as usize)?;
    Ok(request)
}

fn check_block_length(length: usize) -> Result<(), WireError> {
    if (1..=BLOCK_SIZE as usize).contains(&length) {
        Ok(())
    } else {
        Err(WireError::BadBlockLength(length))
    }
}

/// Splits a byte stream into messages: push bytes as they arrive, in any split, and pull
/// messages until it returns `Ok(None)`.
///
/// A frame whose length prefix exceeds [`MAX_FRAME_LEN`] is refused as soon as the prefix is
/// seen; after any error the stream is unusable and the connection should be closed.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buffer: BytesMut,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole message, or `Ok(None)` until more bytes arrive.
    pub fn next_message(&mut self) -> Result<Option<Message>, WireError> {
        let Some(body_len) = frame_body_len(&self.buffer)? else {
            return Ok(None);
        };
        if self.buffer.len() < LEN_PREFIX + body_len {
            self.buffer
                .reserve(LEN_PREFIX + body_len - self.buffer.len());
            return Ok(None);
        }
        self.buffer.advance(LEN_PREFIX);
        let body = self.buffer.split_to(body_len).freeze();
        decode_body(body).map(Some)
    }

    /// Bytes received but not yet returned as messages.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }
}

#[cfg(test)]
mod tests;
