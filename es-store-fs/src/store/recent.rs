//! The newest bytes of the log, kept in memory as the writer wrote them, so that reading a
//! frame appended lately costs a copy instead of a system call.
//!
//! Only bytes whose write succeeded go in, in the order of the log, so that what is held
//! is what the file holds at the same offsets (frames are never rewritten in place while
//! the store is open: a failed sync stops the writer, and sealing only cuts the zero-filled
//! room after the last frame). A frame read from here is checked like one read from the
//! file: its checksum, and that it is the frame the index describes.

use crate::index::FrameRef;
use crate::read_ahead::ReadAhead;

/// The most a log read copies into its window at once, under the lock that a writer
/// adding bytes waits for: 64 KiB, a copy of about 5 to 8 µs (a quarter megabyte took 20
/// to 30 µs from memory not in the cache), still some 270 single-event frames per copy.
const LEND_MAX: usize = 64 << 10;

/// A window of the active segment's newest bytes, at most `cap` long.
#[derive(Debug, Default)]
pub(super) struct RecentBytes {
    segment: u64,
    /// Offset in `segment` of `bytes[0]`.
    start: u64,
    bytes: Vec<u8>,
    cap: usize,
}

impl RecentBytes {
    pub(super) fn with_capacity(cap: usize) -> Self {
        RecentBytes {
            cap,
            ..RecentBytes::default()
        }
    }

    /// Adds bytes just written at `offset` of `segment`. Bytes that do not continue the
    /// window (another segment, a gap) start a new one; the oldest bytes make room.
    pub(super) fn push(&mut self, segment: u64, offset: u64, data: &[u8]) {
        if self.cap == 0 {
            return;
        }
        let end = self.start + self.bytes.len() as u64;
        if segment != self.segment || offset != end || data.len() > self.cap {
            self.segment = segment;
            self.start = offset;
            self.bytes.clear();
            if data.len() > self.cap {
                self.start = offset + data.len() as u64;
                return;
            }
        }
        let over = (self.bytes.len() + data.len()).saturating_sub(self.cap);
        if over > 0 {
            // drop a quarter at least, so that the move is paid once per quarter
            let cut = over.max(self.cap / 4).min(self.bytes.len());
            self.bytes.drain(..cut);
            self.start += cut as u64;
        }
        self.bytes.extend_from_slice(data);
    }

    /// Puts the bytes from `offset` of `segment` up to `end` (at most [`LEND_MAX`] of them)
    /// into `window`, as if it had read them from the file, when the held bytes cover at
    /// least `want` of them; `false`, the window untouched, otherwise.
    pub(super) fn lend_to(
        &self,
        segment: u64,
        offset: u64,
        end: u64,
        want: usize,
        window: &mut ReadAhead,
    ) -> bool {
        if segment != self.segment || offset < self.start || end < offset {
            return false;
        }
        let (Ok(from), Ok(to)) = (
            usize::try_from(offset - self.start),
            usize::try_from(end - self.start),
        ) else {
            return false;
        };
        let to = to.min(self.bytes.len()).min(from.saturating_add(LEND_MAX));
        match self.bytes.get(from..to) {
            Some(bytes) if bytes.len() >= want => {
                window.hold(segment, offset, bytes);
                true
            }
            _ => false,
        }
    }

    /// Copies the bytes of `at` into `buf` when the window holds all of them.
    pub(super) fn copy(&self, at: FrameRef, buf: &mut Vec<u8>) -> bool {
        if at.segment != self.segment || at.offset < self.start {
            return false;
        }
        let from = (at.offset - self.start) as usize;
        match self.bytes.get(from..from + at.len as usize) {
            Some(bytes) => {
                buf.clear();
                buf.extend_from_slice(bytes);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(segment: u64, offset: u64, len: u32) -> FrameRef {
        FrameRef {
            segment,
            offset,
            len,
        }
    }

    #[test]
    fn holds_what_was_written_last_and_nothing_else() {
        let mut r = RecentBytes::with_capacity(16);
        let mut buf = Vec::new();
        r.push(0, 32, b"abcdefgh");
        assert!(r.copy(at(0, 34, 3), &mut buf));
        assert_eq!(buf, b"cde");
        assert!(!r.copy(at(0, 38, 3), &mut buf), "past the end");
        assert!(!r.copy(at(1, 34, 3), &mut buf), "another segment");
        r.push(0, 40, b"ijklmnop");
        assert!(r.copy(at(0, 32, 16), &mut buf));
        // over the cap: the oldest quarter (at least what is over) goes
        r.push(0, 48, b"qr");
        assert!(!r.copy(at(0, 32, 2), &mut buf));
        assert!(r.copy(at(0, 36, 14), &mut buf));
        assert_eq!(buf, b"efghijklmnopqr");
        // a gap starts over
        r.push(0, 60, b"xy");
        assert!(!r.copy(at(0, 48, 2), &mut buf));
        assert!(r.copy(at(0, 60, 2), &mut buf));
        // a new segment starts over
        r.push(1, 32, b"zz");
        assert!(!r.copy(at(0, 60, 2), &mut buf));
        assert!(r.copy(at(1, 32, 2), &mut buf));
        // bytes longer than the cap are not kept, and what follows them continues
        r.push(1, 34, &[7u8; 20]);
        assert!(!r.copy(at(1, 32, 2), &mut buf));
        assert!(!r.copy(at(1, 34, 20), &mut buf));
        r.push(1, 54, b"ok");
        assert!(r.copy(at(1, 54, 2), &mut buf));
    }

    #[test]
    fn lends_what_it_holds_up_to_the_end_given_and_no_more() {
        let mut r = RecentBytes::with_capacity(16);
        r.push(0, 32, b"abcdefgh");
        let mut window = ReadAhead::default();
        assert!(r.lend_to(0, 34, 38, 2, &mut window));
        assert_eq!(window.held(0, 34, 4), Some(&b"cdef"[..]));
        assert!(!window.holds(0, 34, 5), "nothing past the end given");
        assert!(r.lend_to(0, 32, 100, 8, &mut window));
        assert_eq!(window.held(0, 32, 8), Some(&b"abcdefgh"[..]));
        assert!(!window.holds(0, 32, 9), "nothing past what is held");
        // refusals leave the window as it was
        assert!(
            !r.lend_to(0, 34, 38, 5, &mut window),
            "fewer bytes than wanted"
        );
        assert!(!r.lend_to(0, 31, 38, 1, &mut window), "before the start");
        assert!(!r.lend_to(1, 32, 38, 1, &mut window), "another segment");
        assert!(
            !r.lend_to(0, 36, 35, 0, &mut window),
            "an end before the offset"
        );
        assert!(!r.lend_to(0, 41, 50, 1, &mut window), "past the end");
        assert_eq!(window.held(0, 32, 8), Some(&b"abcdefgh"[..]));
        // a long run is lent a part at a time
        let mut r = RecentBytes::with_capacity(2 * LEND_MAX);
        r.push(3, 0, &vec![7u8; 2 * LEND_MAX]);
        assert!(r.lend_to(3, 10, u64::MAX, 1, &mut window));
        assert!(window.holds(3, 10, LEND_MAX));
        assert!(!window.holds(3, 10, LEND_MAX + 1));
    }

    #[test]
    fn a_cap_of_zero_keeps_nothing() {
        let mut r = RecentBytes::with_capacity(0);
        r.push(0, 32, b"abc");
        assert!(!r.copy(at(0, 32, 3), &mut Vec::new()));
    }
}
