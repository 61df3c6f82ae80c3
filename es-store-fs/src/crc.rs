//! CRC-32C of three buffers at once.
//!
//! The `crc32c` crate checksums one buffer at a time. A frame of one event is about 240
//! bytes, too short for the crate's three-way split, so each of its 8-byte steps waits
//! for the one before it: the processor's CRC instruction takes three cycles to give its
//! result and can start one every cycle. Checking three frames side by side keeps it
//! busy, which is how a log read checks the frames it holds (see
//! `store::readers::walk`). Where the processor lacks SSE 4.2, each buffer goes to the
//! crate in turn.

/// The CRC-32C of each of `bufs`, the same value `crc32c::crc32c` gives for it.
pub fn crc32c_3(bufs: [&[u8]; 3]) -> [u32; 3] {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: the processor was just found to have SSE 4.2, the only feature the
        // function enables.
        return unsafe { sse42::crc32c_3(bufs) };
    }
    bufs.map(crc32c::crc32c)
}

#[cfg(target_arch = "x86_64")]
mod sse42 {
    use std::arch::x86_64::{_mm_crc32_u8, _mm_crc32_u64};

    /// One buffer's CRC state after `words`, continued from `crc`.
    #[target_feature(enable = "sse4.2")]
    fn words(mut crc: u64, words: &[[u8; 8]]) -> u64 {
        for w in words {
            crc = _mm_crc32_u64(crc, u64::from_le_bytes(*w));
        }
        crc
    }

    /// The bytes after a buffer's last whole word, and the final inversion.
    #[target_feature(enable = "sse4.2")]
    fn finish(crc: u64, tail: &[u8]) -> u32 {
        let mut crc = crc as u32;
        for &b in tail {
            crc = _mm_crc32_u8(crc, b);
        }
        !crc
    }

    /// The three buffers' words in step while all three have some, then each one's
    /// remainder on its own.
    #[target_feature(enable = "sse4.2")]
    pub(super) fn crc32c_3([a, b, c]: [&[u8]; 3]) -> [u32; 3] {
        let ((wa, ta), (wb, tb), (wc, tc)) = (a.as_chunks(), b.as_chunks(), c.as_chunks());
        let together = wa.len().min(wb.len()).min(wc.len());
        let (mut ca, mut cb, mut cc) = (!0u32 as u64, !0u32 as u64, !0u32 as u64);
        for ((x, y), z) in wa[..together]
            .iter()
            .zip(&wb[..together])
            .zip(&wc[..together])
        {
            ca = _mm_crc32_u64(ca, u64::from_le_bytes(*x));
            cb = _mm_crc32_u64(cb, u64::from_le_bytes(*y));
            cc = _mm_crc32_u64(cc, u64::from_le_bytes(*z));
        }
        [
            finish(words(ca, &wa[together..]), ta),
            finish(words(cb, &wb[together..]), tb),
            finish(words(cc, &wc[together..]), tc),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_at_once_match_the_crate_at_every_length_and_alignment() {
        let bytes: Vec<u8> = (0..1024u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in 0..300 {
            for shift in 0..8 {
                let a = &bytes[shift..shift + len];
                let b = &bytes[100 + shift..100 + shift + (len * 7 / 5)];
                let c = &bytes[17..17 + (300 - len)];
                assert_eq!(
                    crc32c_3([a, b, c]),
                    [a, b, c].map(crc32c::crc32c),
                    "lengths {} {} {}, shift {shift}",
                    a.len(),
                    b.len(),
                    c.len()
                );
            }
        }
    }
}
