//! A read-ahead buffer over one file, for reading frames in log order: recovery's scans
//! and the store's log-order reads share it.

use crate::format::{self, FRAME_OVERHEAD, FRAME_PREFIX_LEN};
use crate::vfs::VfsFile;
use std::io;

/// How far a window reads ahead, at most.
pub const READ_AHEAD: usize = 1 << 20;

/// How far a window's first read reads ahead: each read after it reads twice as far, up
/// to [`READ_AHEAD`]. A read of a few events from the middle of the log (a subscription's
/// batch, a `read_all(from)` taken a few events of) reads kilobytes, not a megabyte each
/// time; a long read soon reads a megabyte at a time.
pub const FIRST_READ_AHEAD: usize = 64 << 10;

/// Bytes of one file read ahead of the reader. It never reads past the `limit` its
/// caller gives: the end of the file, or the end of what is known to be stable.
#[derive(Default)]
pub struct ReadAhead {
    /// Which file the window holds (a segment number); callers reading one file use 0.
    file_no: u64,
    start: u64,
    buf: Vec<u8>,
    /// How far the next read reads ahead (0: none was made yet).
    ahead: usize,
}

impl ReadAhead {
    /// Reads ahead from `offset`; `false` when fewer than `want` bytes lie before `limit`.
    fn fill(
        &mut self,
        file: &dyn VfsFile,
        file_no: u64,
        offset: u64,
        want: usize,
        limit: u64,
    ) -> io::Result<bool> {
        let ahead = match self.ahead {
            0 => FIRST_READ_AHEAD,
            ahead => ahead,
        };
        let n = (want.max(ahead) as u64).min(limit.saturating_sub(offset)) as usize;
        if n < want {
            return Ok(false);
        }
        self.ahead = (ahead * 2).min(READ_AHEAD);
        self.buf.resize(n, 0);
        if let Err(e) = file.read_exact_at(&mut self.buf, offset) {
            self.buf.clear();
            return Err(e);
        }
        self.file_no = file_no;
        self.start = offset;
        Ok(true)
    }

    /// The `n` bytes at `offset` of file `file_no`, read through the window; `None` when
    /// they run past `limit`.
    pub fn slice(
        &mut self,
        file: &dyn VfsFile,
        file_no: u64,
        offset: u64,
        n: usize,
        limit: u64,
    ) -> io::Result<Option<&[u8]>> {
        if offset.checked_add(n as u64).is_none_or(|end| end > limit) {
            return Ok(None);
        }
        if !self.holds(file_no, offset, n) && !self.fill(file, file_no, offset, n, limit)? {
            return Ok(None);
        }
        Ok(self.held(file_no, offset, n))
    }

    /// Holds `bytes` as the bytes at `offset` of file `file_no`, which they must be: bytes
    /// the caller already has in memory, copied instead of read.
    pub fn hold(&mut self, file_no: u64, offset: u64, bytes: &[u8]) {
        self.buf.clear();
        self.buf.extend_from_slice(bytes);
        self.file_no = file_no;
        self.start = offset;
    }

    /// Whether the window already holds the `n` bytes at `offset` of file `file_no`.
    pub fn holds(&self, file_no: u64, offset: u64, n: usize) -> bool {
        self.file_no == file_no
            && offset >= self.start
            && offset
                .checked_add(n as u64)
                .is_some_and(|end| end <= self.start + self.buf.len() as u64)
    }

    /// The bytes the window holds of file `file_no` from `offset` up to `limit`; `None`
    /// when it holds none of them.
    pub fn held_before(&self, file_no: u64, offset: u64, limit: u64) -> Option<&[u8]> {
        if self.file_no != file_no || offset < self.start {
            return None;
        }
        let from = usize::try_from(offset - self.start).ok()?;
        let to = usize::try_from(limit.saturating_sub(self.start))
            .unwrap_or(usize::MAX)
            .min(self.buf.len());
        self.buf.get(from..to).filter(|held| !held.is_empty())
    }

    /// The `n` bytes at `offset` of file `file_no`, if the window holds them.
    pub fn held(&self, file_no: u64, offset: u64, n: usize) -> Option<&[u8]> {
        if !self.holds(file_no, offset, n) {
            return None;
        }
        let at = (offset - self.start) as usize;
        self.buf.get(at..at + n)
    }

    /// The length of the frame at `offset` if its prefix is there and plausible.
    fn frame_len_at(
        &mut self,
        file: &dyn VfsFile,
        offset: u64,
        limit: u64,
        cap: usize,
    ) -> io::Result<Option<usize>> {
        Ok(self
            .slice(file, 0, offset, FRAME_PREFIX_LEN, limit)?
            .and_then(|prefix| format::frame_len(prefix, cap).ok()))
    }

    /// The whole frame at `offset` of a single file read in one pass, if its length is
    /// plausible and it ends before `limit`.
    pub fn frame(
        &mut self,
        file: &dyn VfsFile,
        offset: u64,
        limit: u64,
        cap: usize,
    ) -> io::Result<Option<&[u8]>> {
        match self.frame_len_at(file, offset, limit, cap)? {
            Some(n) => self.slice(file, 0, offset, n, limit),
            None => Ok(None),
        }
    }

    /// Like [`ReadAhead::frame`], but first checks the trailing length cheaply, for scans
    /// that try every offset.
    pub fn candidate(
        &mut self,
        file: &dyn VfsFile,
        offset: u64,
        limit: u64,
        cap: usize,
    ) -> io::Result<Option<&[u8]>> {
        let Some(n) = self.frame_len_at(file, offset, limit, cap)? else {
            return Ok(None);
        };
        let body_len = (n - FRAME_OVERHEAD) as u32;
        let trailing_at = offset + (n - 4) as u64;
        if trailing_at + 4 > limit {
            return Ok(None);
        }
        // read the trailing length beside the window, not through it: moving the window
        // for every plausible length would re-read a megabyte per offset tried
        let mut trailing = [0u8; 4];
        let end = self.start + self.buf.len() as u64;
        if trailing_at >= self.start && trailing_at + 4 <= end {
            let at = (trailing_at - self.start) as usize;
            trailing.copy_from_slice(&self.buf[at..at + 4]);
        } else {
            file.read_exact_at(&mut trailing, trailing_at)?;
        }
        if trailing != body_len.to_le_bytes() {
            return Ok(None);
        }
        self.slice(file, 0, offset, n, limit)
    }
}
