//! A file being downloaded or served, accessed by piece and block with positioned reads and
//! writes, so any number of blocks can be read and written at once without a shared cursor.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use mtorrent_shared::{BlockRef, Lengths, ValidPieceIndex};

use crate::catalog::FileStamp;

/// One file on disk, of the size its `.mtorrent` says.
#[derive(Debug)]
pub struct Storage {
    file: File,
    lengths: Lengths,
    writable: bool,
}

impl Storage {
    /// Creates the file for a new download, at its full size (sparse where the filesystem
    /// allows). Refuses to touch a file that already exists: it may be the user's.
    pub fn create_new(path: &Path, lengths: Lengths) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        file.set_len(lengths.total())?;
        Ok(Self {
            file,
            lengths,
            writable: true,
        })
    }

    /// Opens an existing file: for writing to resume a download, or read-only to serve it. Its
    /// size must be the expected one.
    pub fn open_existing(path: &Path, lengths: Lengths, writable: bool) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(writable).open(path)?;
        let size = file.metadata()?.len();
        if size != lengths.total() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is {size} bytes, expected {}",
                    path.display(),
                    lengths.total()
                ),
            ));
        }
        Ok(Self {
            file,
            lengths,
            writable,
        })
    }

    /// Whether blocks may be written (a download), or only read (a file served as it is).
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// The open file's size and modification time now.
    pub fn stamp(&self) -> io::Result<FileStamp> {
        Ok(FileStamp::from_metadata(&self.file.metadata()?))
    }

    /// The file's piece arithmetic.
    pub fn lengths(&self) -> Lengths {
        self.lengths
    }

    /// Reads one block into `buffer` (which must be `block.length` bytes).
    pub fn read_block(&self, block: BlockRef, buffer: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buffer, self.offset(block))
    }

    /// Writes one block's bytes (`block.length` of them) in place.
    pub fn write_block(&self, block: BlockRef, data: &[u8]) -> io::Result<()> {
        debug_assert_eq!(data.len(), block.length as usize);
        self.file.write_all_at(data, self.offset(block))
    }

    /// Reads a whole piece into the start of `buffer` and returns it.
    pub fn read_piece<'a>(
        &self,
        piece: ValidPieceIndex,
        buffer: &'a mut [u8],
    ) -> io::Result<&'a [u8]> {
        let data = &mut buffer[..self.lengths.piece_length(piece) as usize];
        self.file
            .read_exact_at(data, self.lengths.piece_offset(piece))?;
        Ok(data)
    }

    /// Makes everything written so far durable.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn offset(&self, block: BlockRef) -> u64 {
        self.lengths.piece_offset(block.piece) + u64::from(block.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mtorrent_shared::{PieceHash, PIECE_SIZE};

    #[test]
    fn blocks_written_in_any_order_make_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        let size = 2 * PIECE_SIZE as usize + 1000;
        let data: Vec<u8> = (0..size).map(|i| (i * 13 % 256) as u8).collect();
        let lengths = Lengths::new(size as u64).unwrap();
        let storage = Storage::create_new(&path, lengths).unwrap();
        let mut blocks: Vec<BlockRef> = lengths.pieces().flat_map(|p| lengths.blocks(p)).collect();
        blocks.reverse();
        for block in &blocks {
            let start = (lengths.piece_offset(block.piece) + u64::from(block.offset)) as usize;
            storage
                .write_block(*block, &data[start..start + block.length as usize])
                .unwrap();
        }
        storage.sync().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), data);
        let mut buffer = vec![0; PIECE_SIZE as usize];
        let last = lengths.validate_piece_index(2).unwrap();
        let piece = storage.read_piece(last, &mut buffer).unwrap();
        assert_eq!(
            PieceHash::of(piece),
            PieceHash::of(&data[2 * PIECE_SIZE as usize..])
        );
        let mut block = vec![0; blocks[0].length as usize];
        storage.read_block(blocks[0], &mut block).unwrap();
        assert_eq!(block, data[size - block.len()..]);
    }

    #[test]
    fn never_overwrites_an_existing_file_and_checks_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mine.txt");
        std::fs::write(&path, b"precious").unwrap();
        let lengths = Lengths::new(100).unwrap();
        let err = Storage::create_new(&path, lengths).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
        let err = Storage::open_existing(&path, lengths, false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(Storage::open_existing(&path, Lengths::new(8).unwrap(), false).is_ok());
    }
}
