//! The byte format of the file journal: segment and dead-letter file headers, and the
//! records inside them.
//!
//! A record is `[len u32][crc32 u32][kind u8][payload; len]`, little-endian; the CRC
//! (IEEE, as zlib) covers the kind byte and the payload. A segment file starts with
//! [`SEGMENT_MAGIC`] (whose last byte is the format version), the first id the segment may
//! hold (u64) and the CRC of those 16 bytes; `dead.log` starts with [`DEAD_MAGIC`].

use std::io;

/// `[len u32][crc32 u32][kind u8]`.
pub(super) const RECORD_HEADER: usize = 9;
/// The largest payload a record may declare; a longer one is damage, not data.
pub(super) const MAX_PAYLOAD: usize = 16 * 1024 * 1024;

/// The start of every segment file; the last byte is the format version.
pub(super) const SEGMENT_MAGIC: [u8; 8] = *b"TWJ-SEG\x01";
/// Magic (8), first id (8), CRC of both (4).
pub(super) const SEGMENT_HEADER: usize = 20;
/// The start of `dead.log`; the last byte is the format version.
pub(super) const DEAD_MAGIC: [u8; 8] = *b"TWJ-DLQ\x01";

/// An entry stored: `id u64` + [`JournalEntry::encode`](super::super::JournalEntry::encode).
pub(super) const APPEND: u8 = 1;
/// An entry finished: `id u64`.
pub(super) const FINISH: u8 = 2;
/// An entry handed out again: `id u64` + `attempt u32` (the delivery it was handed out for).
pub(super) const ATTEMPT: u8 = 3;
/// An entry moved to the dead letters: `id u64`.
pub(super) const DEAD: u8 = 4;
/// In `dead.log`: `unix_ms u64`, `id u64`, `reason_len u32`, reason, the encoded entry.
pub(super) const DEAD_LETTER: u8 = 16;

/// Appends one framed record to `out`; `parts` are concatenated into the payload.
pub(super) fn frame(kind: u8, parts: &[&[u8]], out: &mut Vec<u8>) {
    let len: usize = parts.iter().map(|part| part.len()).sum();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[kind]);
    for part in parts {
        crc.update(part);
    }
    out.reserve(RECORD_HEADER + len);
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.push(kind);
    for part in parts {
        out.extend_from_slice(part);
    }
}

/// A framed record of `kind` about entry `id` with nothing else in it.
pub(super) fn id_record(kind: u8, id: u64, out: &mut Vec<u8>) {
    frame(kind, &[&id.to_le_bytes()], out);
}

/// What is at the front of a byte slice.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Parsed<'a> {
    /// A whole record whose CRC matches; `size` bytes long with its header.
    Record {
        kind: u8,
        payload: &'a [u8],
        size: usize,
    },
    /// Not a record: too short for what it declares, an impossible length, or a CRC that
    /// does not match (a torn write, or damage).
    Bad,
}

/// Reads the record at the front of `bytes` (which must not be empty).
pub(super) fn parse(bytes: &[u8]) -> Parsed<'_> {
    let Some(header) = bytes.get(..RECORD_HEADER) else {
        return Parsed::Bad;
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let kind = header[8];
    if len > MAX_PAYLOAD {
        return Parsed::Bad;
    }
    let Some(payload) = bytes.get(RECORD_HEADER..RECORD_HEADER + len) else {
        return Parsed::Bad;
    };
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&[kind]);
    hasher.update(payload);
    if hasher.finalize() != crc {
        return Parsed::Bad;
    }
    Parsed::Record {
        kind,
        payload,
        size: RECORD_HEADER + len,
    }
}

/// A segment file's header, naming the first id it may hold.
pub(super) fn segment_header(first_id: u64) -> [u8; SEGMENT_HEADER] {
    let mut header = [0; SEGMENT_HEADER];
    header[..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..16].copy_from_slice(&first_id.to_le_bytes());
    let crc = crc32fast::hash(&header[..16]);
    header[16..].copy_from_slice(&crc.to_le_bytes());
    header
}

/// What a segment file's first bytes say.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SegmentHeader {
    /// A segment of this format; the first id it may hold.
    Valid(u64),
    /// A segment of another format version (written by a newer build).
    OtherVersion(u8),
    /// Too short, or not what this journal writes.
    Bad,
}

/// Reads a segment file's header.
pub(super) fn read_segment_header(bytes: &[u8]) -> SegmentHeader {
    let Some(header) = bytes.get(..SEGMENT_HEADER) else {
        return SegmentHeader::Bad;
    };
    if header[..7] != SEGMENT_MAGIC[..7] {
        return SegmentHeader::Bad;
    }
    let crc = u32::from_le_bytes([header[16], header[17], header[18], header[19]]);
    if crc32fast::hash(&header[..16]) != crc {
        return SegmentHeader::Bad;
    }
    if header[7] != SEGMENT_MAGIC[7] {
        return SegmentHeader::OtherVersion(header[7]);
    }
    let mut first = [0; 8];
    first.copy_from_slice(&header[8..16]);
    SegmentHeader::Valid(u64::from_le_bytes(first))
}

/// Reads a little-endian `u64` at the front of `bytes`.
pub(super) fn read_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?))
}

/// Reads a little-endian `u32` at the front of `bytes`.
pub(super) fn read_u32(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?))
}

/// Reads exactly `buf.len()` bytes at `offset`, without moving the file's cursor (unix) or
/// from a handle only ever used with explicit offsets (windows).
pub(super) fn read_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        let mut done = 0;
        while done < buf.len() {
            let read = std::os::windows::fs::FileExt::seek_read(
                file,
                &mut buf[done..],
                offset + done as u64,
            )?;
            if read == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            done += read;
        }
        Ok(())
    }
}

/// Writes all of `buf` at `offset` (see [`read_at`]).
pub(super) fn write_at(file: &std::fs::File, buf: &[u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        let mut done = 0;
        while done < buf.len() {
            let written = std::os::windows::fs::FileExt::seek_write(
                file,
                &buf[done..],
                offset + done as u64,
            )?;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            done += written;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_any_damage_is_bad_not_a_panic() {
        let mut out = Vec::new();
        frame(APPEND, &[&7u64.to_le_bytes(), b"entry"], &mut out);
        id_record(FINISH, 7, &mut out);
        let Parsed::Record {
            kind,
            payload,
            size,
        } = parse(&out)
        else {
            panic!("not a record");
        };
        assert_eq!((kind, size), (APPEND, RECORD_HEADER + 13));
        assert_eq!(&payload[8..], b"entry");
        assert!(matches!(
            parse(&out[size..]),
            Parsed::Record { kind: FINISH, .. }
        ));
        for cut in 0..size {
            assert_eq!(parse(&out[..cut]), Parsed::Bad, "cut at {cut}");
        }
        for byte in 0..size {
            let mut damaged = out.clone();
            damaged[byte] ^= 0x40;
            // A damaged length may still frame the second record's bytes; never the first's.
            assert!(
                !matches!(parse(&damaged), Parsed::Record { kind: APPEND, size: s, .. } if s == size),
                "flip at {byte}"
            );
        }
        assert_eq!(parse(&[0xff; 64]), Parsed::Bad);
    }

    #[test]
    fn segment_headers_name_their_first_id_and_version() {
        let header = segment_header(42);
        assert_eq!(read_segment_header(&header), SegmentHeader::Valid(42));
        assert_eq!(read_segment_header(&header[..19]), SegmentHeader::Bad);
        let mut newer = header;
        newer[7] = 2;
        let crc = crc32fast::hash(&newer[..16]);
        newer[16..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(read_segment_header(&newer), SegmentHeader::OtherVersion(2));
        let mut damaged = header;
        damaged[9] ^= 1;
        assert_eq!(read_segment_header(&damaged), SegmentHeader::Bad);
    }
}
