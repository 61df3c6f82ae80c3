//! The `PUBLISHED` file: where the writer records, after every group commit, how far the
//! log is acknowledged and how far it is durable.
//!
//! ```text
//! PUBLISHED (52 bytes, rewritten in place, never synced on its own)
//!   0..8    magic b"ESPUBL02"
//!   8..16   acknowledged end: segment u64
//!   16..24                    offset u64
//!   24..32  acknowledged head position u64
//!   32..40  durable end: segment u64     (synced before this record was written)
//!   40..48               offset u64
//!   48..52  CRC32C of bytes 0..48
//! ```
//!
//! Two readers use it. A read-only open beside a live writer reads the log only up to
//! the acknowledged end, so it never sees a frame being written. Recovery takes the
//! durable end as a proof: the record is written only after the sync it reports, so the
//! log held every byte before that end durably, and a bad region or a shorter log there
//! is damage or loss, never a torn write. The record itself is not synced: after a power
//! loss it may be older than the log (it then proves less), never newer.

use crate::layout::LogOffset;
use crate::vfs::VfsFile;

const MAGIC: &[u8; 8] = b"ESPUBL02";
const LEN: usize = 52;

/// What the writer published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Where the last acknowledged frame ends.
    pub end: LogOffset,
    /// The last acknowledged position.
    pub head: u64,
    /// How far the log was synced.
    pub durable: LogOffset,
}

impl Published {
    /// Encodes the record.
    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0..8].copy_from_slice(MAGIC);
        for (i, v) in [
            self.end.segment,
            self.end.offset,
            self.head,
            self.durable.segment,
            self.durable.offset,
        ]
        .into_iter()
        .enumerate()
        {
            b[8 + 8 * i..16 + 8 * i].copy_from_slice(&v.to_le_bytes());
        }
        let crc = crc32c::crc32c(&b[..48]);
        b[48..52].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a record; `None` unless it is whole and intact.
    pub fn decode(b: &[u8]) -> Option<Published> {
        let b = b.get(..LEN)?;
        if &b[0..8] != MAGIC || crc32c::crc32c(&b[..48]).to_le_bytes() != b[48..52] {
            return None;
        }
        let at =
            |i: usize| u64::from_le_bytes(b[8 + 8 * i..16 + 8 * i].try_into().unwrap_or([0; 8]));
        Some(Published {
            end: LogOffset::new(at(0), at(1)),
            head: at(2),
            durable: LogOffset::new(at(3), at(4)),
        })
    }

    /// Writes the record at the start of `file`. A failure leaves an older record (or a
    /// torn one, which fails its checksum): readers then see less, recovery proves less.
    pub fn write(&self, file: &dyn VfsFile) {
        if let Err(e) = file.write_all_at(&self.encode(), 0) {
            tracing::warn!("publishing the log's end: {e}");
        }
    }

    /// Reads the record: `None` when it is shorter than a record or not intact. A read
    /// racing the writer's update may see half of it: it is read again a few times. A
    /// failed read is an error, never taken for "no record": the record may be the only
    /// proof of what was durable.
    pub fn read(file: &dyn VfsFile) -> std::io::Result<Option<Published>> {
        for _ in 0..100 {
            let mut b = [0u8; LEN];
            match file.read_exact_at(&mut b, 0) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(e) => return Err(e),
            }
            if let Some(p) = Published::decode(&b) {
                return Ok(Some(p));
            }
            std::thread::yield_now();
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_any_flipped_bit() {
        let p = Published {
            end: LogOffset::new(3, 4096),
            head: 77,
            durable: LogOffset::new(3, 2048),
        };
        let b = p.encode();
        assert_eq!(Published::decode(&b), Some(p));
        for i in 0..LEN * 8 {
            let mut c = b;
            c[i / 8] ^= 1 << (i % 8);
            assert_eq!(Published::decode(&c), None, "bit {i}");
        }
        assert_eq!(Published::decode(&b[..LEN - 1]), None);
    }
}
