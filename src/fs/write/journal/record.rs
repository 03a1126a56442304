//! The journal's records on disk. A segment file is a magic line and then records, each
//! `[u32 len][u32 crc32c(body)][body]` (little-endian), so that a torn or damaged tail is
//! found where it starts and everything before it is kept.
//!
//! Bodies: `OP` (an operation answered early, with everything needed to send it again,
//! a write's data inline), `DONE` (the server answered it) and `CONFLICT` (an operation's
//! target changed on the server: what this mount queued went to another name).

use bytes::Bytes;

use crate::fs::names::inode::RelPath;
use crate::remote::Attrs;

use super::Op;

/// The first bytes of every segment: a file without them is not a segment of this format.
pub const MAGIC: &[u8; 8] = b"SFTPFSJ1";
/// Record header: length and checksum.
pub const HEADER: usize = 8;
/// A body longer than this is damage, not a record (a write is at most 256 KiB).
pub const MAX_BODY: usize = 16 << 20;

const KIND_OP: u8 = 1;
const KIND_DONE: u8 = 2;
const KIND_CONFLICT: u8 = 3;

/// What the mount last knew of an operation's target on the server, to tell at send time
/// whether someone else changed it since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    /// Nothing to check (the operation builds on earlier ones of this mount, or changes
    /// nothing another version could lose).
    Unchecked,
    /// The name did not exist.
    Absent,
    /// A file of this size and mtime (whole seconds).
    Seen { size: u64, mtime: u32 },
}

/// An operation as the journal keeps it.
#[derive(Debug, Clone)]
pub struct OpRecord {
    pub seq: u64,
    /// The file of the asynchronous mode it belongs to (0: none).
    pub file: u64,
    /// Wall-clock time it was queued, nanoseconds since the epoch.
    pub time_ns: u64,
    pub path: RelPath,
    pub base: Base,
    pub op: Op,
}

#[derive(Debug, Clone)]
pub enum Record {
    Op(OpRecord),
    /// The server answered operation `seq` (`failed`: with a refusal, already reported).
    Done {
        seq: u64,
        failed: bool,
    },
    /// Operation `seq` found its target `from` changed on the server: this mount's version
    /// went to `to`, and so do the operations queued before `mark` that name `from`.
    Conflict {
        seq: u64,
        mark: u64,
        from: RelPath,
        to: RelPath,
    },
}

/// CRC-32C (Castagnoli), bitwise table: what iSCSI, ext4 and btrfs use for the same job.
pub fn crc32c(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82F6_3B78
                } else {
                    c >> 1
                };
            }
            *e = c;
        }
        t
    });
    let mut crc = !0u32;
    for &b in data {
        crc = table[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    fn attrs(&mut self, a: &Attrs) {
        let flags = a.size.is_some() as u8
            | (a.uid_gid.is_some() as u8) << 1
            | (a.permissions.is_some() as u8) << 2
            | (a.atime_mtime.is_some() as u8) << 3;
        self.u8(flags);
        if let Some(s) = a.size {
            self.u64(s);
        }
        if let Some((u, g)) = a.uid_gid {
            self.u32(u);
            self.u32(g);
        }
        if let Some(p) = a.permissions {
            self.u32(p);
        }
        if let Some((at, mt)) = a.atime_mtime {
            self.u32(at);
            self.u32(mt);
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn attrs(&mut self) -> Option<Attrs> {
        let f = self.u8()?;
        if f & !0xf != 0 {
            return None;
        }
        let mut a = Attrs::default();
        if f & 1 != 0 {
            a.size = Some(self.u64()?);
        }
        if f & 2 != 0 {
            a.uid_gid = Some((self.u32()?, self.u32()?));
        }
        if f & 4 != 0 {
            a.permissions = Some(self.u32()?);
        }
        if f & 8 != 0 {
            a.atime_mtime = Some((self.u32()?, self.u32()?));
        }
        Some(a)
    }
}

const OP_OPEN: u8 = 1;
const OP_WRITE: u8 = 2;
const OP_FSETSTAT: u8 = 3;
const OP_CLOSE: u8 = 4;
const OP_MKDIR: u8 = 5;
const OP_REMOVE: u8 = 6;
const OP_RMDIR: u8 = 7;
const OP_RENAME: u8 = 8;
const OP_SETSTAT: u8 = 9;

impl Record {
    /// The record, framed (header and body), appended to `out`. For a write, where its data
    /// starts, counted from the record's start (replay reads it back from there).
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Option<usize> {
        let start = out.len();
        let mut data_at = None;
        out.extend_from_slice(&[0; HEADER]);
        let mut w = Writer(std::mem::take(out));
        match self {
            Record::Op(r) => {
                w.u8(KIND_OP);
                w.u64(r.seq);
                w.u64(r.file);
                w.u64(r.time_ns);
                w.bytes(&r.path);
                match r.base {
                    Base::Unchecked => w.u8(0),
                    Base::Absent => w.u8(1),
                    Base::Seen { size, mtime } => {
                        w.u8(2);
                        w.u64(size);
                        w.u32(mtime);
                    }
                }
                match &r.op {
                    Op::Write(off, data) => {
                        // Its data last, where `encode_into` says it starts.
                        w.u8(OP_WRITE);
                        w.u64(*off);
                        w.u32(data.len() as u32);
                        data_at = Some(w.0.len() - start);
                        w.0.extend_from_slice(data);
                    }
                    Op::Open { pflags, attrs } => {
                        w.u8(OP_OPEN);
                        w.u32(*pflags);
                        w.attrs(attrs);
                    }
                    Op::FSetStat(a) => {
                        w.u8(OP_FSETSTAT);
                        w.attrs(a);
                    }
                    Op::Close => w.u8(OP_CLOSE),
                    Op::Mkdir(a) => {
                        w.u8(OP_MKDIR);
                        w.attrs(a);
                    }
                    Op::Remove => w.u8(OP_REMOVE),
                    Op::Rmdir => w.u8(OP_RMDIR),
                    Op::Rename(to) => {
                        w.u8(OP_RENAME);
                        w.bytes(to);
                    }
                    Op::SetStat(a) => {
                        w.u8(OP_SETSTAT);
                        w.attrs(a);
                    }
                    // Made up by replay, never queued as such.
                    Op::Resume { .. } => unreachable!("a re-open is never recorded"),
                }
            }
            Record::Done { seq, failed } => {
                w.u8(KIND_DONE);
                w.u64(*seq);
                w.u8(*failed as u8);
            }
            Record::Conflict {
                seq,
                mark,
                from,
                to,
            } => {
                w.u8(KIND_CONFLICT);
                w.u64(*seq);
                w.u64(*mark);
                w.bytes(from);
                w.bytes(to);
            }
        }
        *out = w.0;
        let body = &out[start + HEADER..];
        let len = (body.len() as u32).to_le_bytes();
        let crc = crc32c(body).to_le_bytes();
        out[start..start + 4].copy_from_slice(&len);
        out[start + 4..start + 8].copy_from_slice(&crc);
        data_at
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode_into(&mut v);
        v
    }

    /// A body whose checksum matched; `None` if it does not decode (damage the checksum
    /// did not catch, or a newer format). Without `keep_data` a write's data is left out
    /// (replay reads it from the segment when it sends it): the write's place in the body
    /// and its length come back instead.
    pub fn decode(body: &[u8], keep_data: bool) -> Option<(Record, Option<(usize, u32)>)> {
        let mut data_at = None;
        let mut r = Reader(body);
        let rec = match r.u8()? {
            KIND_OP => {
                let seq = r.u64()?;
                let file = r.u64()?;
                let time_ns = r.u64()?;
                let path = r.bytes()?.to_vec();
                let base = match r.u8()? {
                    0 => Base::Unchecked,
                    1 => Base::Absent,
                    2 => Base::Seen {
                        size: r.u64()?,
                        mtime: r.u32()?,
                    },
                    _ => return None,
                };
                let op = match r.u8()? {
                    OP_OPEN => Op::Open {
                        pflags: r.u32()?,
                        attrs: r.attrs()?,
                    },
                    OP_WRITE => {
                        let off = r.u64()?;
                        let data = r.bytes()?;
                        data_at = Some((body.len() - r.0.len() - data.len(), data.len() as u32));
                        match keep_data {
                            true => Op::Write(off, Bytes::copy_from_slice(data)),
                            false => Op::Write(off, Bytes::new()),
                        }
                    }
                    OP_FSETSTAT => Op::FSetStat(r.attrs()?),
                    OP_CLOSE => Op::Close,
                    OP_MKDIR => Op::Mkdir(r.attrs()?),
                    OP_REMOVE => Op::Remove,
                    OP_RMDIR => Op::Rmdir,
                    OP_RENAME => Op::Rename(r.bytes()?.to_vec()),
                    OP_SETSTAT => Op::SetStat(r.attrs()?),
                    _ => return None,
                };
                Record::Op(OpRecord {
                    seq,
                    file,
                    time_ns,
                    path,
                    base,
                    op,
                })
            }
            KIND_DONE => Record::Done {
                seq: r.u64()?,
                failed: r.u8()? != 0,
            },
            KIND_CONFLICT => Record::Conflict {
                seq: r.u64()?,
                mark: r.u64()?,
                from: r.bytes()?.to_vec(),
                to: r.bytes()?.to_vec(),
            },
            _ => return None,
        };
        r.0.is_empty().then_some((rec, data_at))
    }
}

/// One record found in a segment: where it starts, and what it is.
#[derive(Debug)]
pub struct Found {
    pub offset: u64,
    pub record: Record,
    /// A write's data: where it starts in the segment, and its length.
    pub data: Option<(u64, u32)>,
}

/// What a segment holds: its records up to the first damage, and where that damage
/// starts (`cut_at`, with how many bytes follow it) if any.
#[derive(Debug, Default)]
pub struct Scanned {
    pub records: Vec<Found>,
    pub cut_at: Option<(u64, u64)>,
}

/// Reads the records of a segment's bytes (after the magic, which the caller checked).
pub fn scan(bytes: &[u8], start: usize, keep_data: bool) -> Scanned {
    let mut out = Scanned::default();
    let mut at = start;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let cut = |out: &mut Scanned| out.cut_at = Some((at as u64, rest.len() as u64));
        if rest.len() < HEADER {
            cut(&mut out);
            break;
        }
        let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().unwrap());
        if len == 0 || len > MAX_BODY || rest.len() < HEADER + len {
            cut(&mut out);
            break;
        }
        let body = &rest[HEADER..HEADER + len];
        let decoded = (crc32c(body) == crc)
            .then(|| Record::decode(body, keep_data))
            .flatten();
        let (record, data) = match decoded {
            Some(r) => r,
            None => {
                cut(&mut out);
                break;
            }
        };
        out.records.push(Found {
            offset: at as u64,
            record,
            data: data.map(|(d, len)| ((at + HEADER + d) as u64, len)),
        });
        at += HEADER + len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(seq: u64, op: Op) -> Record {
        Record::Op(OpRecord {
            seq,
            file: 7,
            time_ns: 1_700_000_000_123_456_789,
            path: b"d/f".to_vec(),
            base: Base::Seen {
                size: 12,
                mtime: 1_700_000_000,
            },
            op,
        })
    }

    fn all_kinds() -> Vec<Record> {
        let a = Attrs {
            size: Some(5),
            uid_gid: Some((1, 2)),
            permissions: Some(0o644),
            atime_mtime: Some((3, 4)),
        };
        vec![
            op(
                1,
                Op::Open {
                    pflags: 0x1a,
                    attrs: a.clone(),
                },
            ),
            op(2, Op::Write(4096, Bytes::from_static(b"hello"))),
            op(3, Op::FSetStat(Attrs::default())),
            op(4, Op::Close),
            op(5, Op::Mkdir(a.clone())),
            op(6, Op::Remove),
            op(7, Op::Rmdir),
            op(8, Op::Rename(b"e/g".to_vec())),
            op(9, Op::SetStat(a)),
            Record::Done {
                seq: 9,
                failed: true,
            },
            Record::Conflict {
                seq: 1,
                mark: 10,
                from: b"d/f".to_vec(),
                to: b"d/f.sftpfs-conflict-h-20260101T000000Z".to_vec(),
            },
        ]
    }

    #[test]
    fn crc32c_of_the_standard_check_string() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn every_kind_of_record_reads_back_as_written() {
        let mut bytes = MAGIC.to_vec();
        for r in all_kinds() {
            r.encode_into(&mut bytes);
        }
        let s = scan(&bytes, MAGIC.len(), true);
        assert!(s.cut_at.is_none());
        assert_eq!(s.records.len(), all_kinds().len());
        for (found, want) in s.records.iter().zip(all_kinds()) {
            assert_eq!(format!("{:?}", found.record), format!("{want:?}"));
        }
    }

    #[test]
    fn a_write_s_data_is_where_encoding_and_scanning_say() {
        let r = op(2, Op::Write(1, Bytes::from_static(b"payload")));
        let mut bytes = MAGIC.to_vec();
        op(1, Op::Close).encode_into(&mut bytes);
        let start = bytes.len();
        let at = start + r.encode_into(&mut bytes).unwrap();
        assert_eq!(&bytes[at..at + 7], b"payload");
        assert_eq!(bytes.len(), at + 7);
        let s = scan(&bytes, MAGIC.len(), false);
        assert_eq!(s.records[1].data, Some((at as u64, 7)));
        match &s.records[1].record {
            Record::Op(OpRecord {
                op: Op::Write(1, d),
                ..
            }) => assert!(d.is_empty()),
            r => panic!("{r:?}"),
        }
    }

    #[test]
    fn a_torn_tail_is_cut_and_every_record_before_it_kept() {
        let mut bytes = MAGIC.to_vec();
        for r in all_kinds() {
            r.encode_into(&mut bytes);
        }
        let whole = bytes.len();
        let last_start = whole - all_kinds().last().unwrap().encode().len();
        // Cut at every byte of the last record: the ten before it stay.
        for len in last_start..whole {
            let s = scan(&bytes[..len], MAGIC.len(), true);
            assert_eq!(s.records.len(), all_kinds().len() - 1, "cut at {len}");
            if len > last_start {
                assert_eq!(
                    s.cut_at,
                    Some((last_start as u64, (len - last_start) as u64))
                );
            } else {
                assert_eq!(s.cut_at, None);
            }
        }
    }

    #[test]
    fn a_flipped_bit_anywhere_in_a_record_ends_the_segment_there() {
        let mut bytes = MAGIC.to_vec();
        for r in all_kinds() {
            r.encode_into(&mut bytes);
        }
        let third = scan(&bytes, MAGIC.len(), true).records[2].offset as usize;
        let fourth = scan(&bytes, MAGIC.len(), true).records[3].offset as usize;
        for i in third..fourth {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                let s = scan(&b, MAGIC.len(), true);
                assert_eq!(s.records.len(), 2, "byte {i} bit {bit}");
                assert_eq!(s.cut_at.unwrap().0, third as u64);
            }
        }
    }

    #[test]
    fn garbage_reads_as_no_records() {
        let junk: Vec<u8> = (0..10_000u32)
            .map(|i| i.wrapping_mul(2_654_435_761) as u8)
            .collect();
        let s = scan(&junk, 0, true);
        assert!(s.records.is_empty());
        assert_eq!(s.cut_at, Some((0, junk.len() as u64)));
    }
}
