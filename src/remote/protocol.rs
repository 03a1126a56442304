//! SFTP version 3 wire format (draft-ietf-secsh-filexfer-02) plus OpenSSH's extensions.
//!
//! Our own codec rather than russh-sftp's: russh-sftp 3.0.1 decodes file names and handles as
//! lossy UTF-8, which corrupts non-UTF-8 names and OpenSSH handles with a byte ≥ 0x80.
//! Here names and handles stay bytes end to end.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::bounds::{server_text, MAX_HANDLE};

pub const SSH_FXP_INIT: u8 = 1;
pub const SSH_FXP_VERSION: u8 = 2;
pub const SSH_FXP_OPEN: u8 = 3;
pub const SSH_FXP_CLOSE: u8 = 4;
pub const SSH_FXP_READ: u8 = 5;
pub const SSH_FXP_WRITE: u8 = 6;
pub const SSH_FXP_LSTAT: u8 = 7;
pub const SSH_FXP_FSTAT: u8 = 8;
pub const SSH_FXP_SETSTAT: u8 = 9;
pub const SSH_FXP_FSETSTAT: u8 = 10;
pub const SSH_FXP_OPENDIR: u8 = 11;
pub const SSH_FXP_READDIR: u8 = 12;
pub const SSH_FXP_REMOVE: u8 = 13;
pub const SSH_FXP_MKDIR: u8 = 14;
pub const SSH_FXP_RMDIR: u8 = 15;
pub const SSH_FXP_REALPATH: u8 = 16;
pub const SSH_FXP_STAT: u8 = 17;
pub const SSH_FXP_RENAME: u8 = 18;
pub const SSH_FXP_READLINK: u8 = 19;
pub const SSH_FXP_SYMLINK: u8 = 20;
pub const SSH_FXP_STATUS: u8 = 101;
pub const SSH_FXP_HANDLE: u8 = 102;
pub const SSH_FXP_DATA: u8 = 103;
pub const SSH_FXP_NAME: u8 = 104;
pub const SSH_FXP_ATTRS: u8 = 105;
pub const SSH_FXP_EXTENDED: u8 = 200;
pub const SSH_FXP_EXTENDED_REPLY: u8 = 201;

pub const SSH_FX_OK: u32 = 0;
pub const SSH_FX_EOF: u32 = 1;
pub const SSH_FX_NO_SUCH_FILE: u32 = 2;
pub const SSH_FX_PERMISSION_DENIED: u32 = 3;
pub const SSH_FX_FAILURE: u32 = 4;
pub const SSH_FX_BAD_MESSAGE: u32 = 5;
pub const SSH_FX_NO_CONNECTION: u32 = 6;
pub const SSH_FX_CONNECTION_LOST: u32 = 7;
pub const SSH_FX_OP_UNSUPPORTED: u32 = 8;
// Status codes of SFTP versions 4 to 6, which some servers send in version 3 too.
pub const SSH_FX_INVALID_HANDLE: u32 = 9;
pub const SSH_FX_NO_SUCH_PATH: u32 = 10;
pub const SSH_FX_FILE_ALREADY_EXISTS: u32 = 11;
pub const SSH_FX_WRITE_PROTECT: u32 = 12;
pub const SSH_FX_NO_MEDIA: u32 = 13;
pub const SSH_FX_NO_SPACE_ON_FILESYSTEM: u32 = 14;
pub const SSH_FX_QUOTA_EXCEEDED: u32 = 15;
pub const SSH_FX_UNKNOWN_PRINCIPAL: u32 = 16;
pub const SSH_FX_LOCK_CONFLICT: u32 = 17;
pub const SSH_FX_DIR_NOT_EMPTY: u32 = 18;
pub const SSH_FX_NOT_A_DIRECTORY: u32 = 19;
pub const SSH_FX_INVALID_FILENAME: u32 = 20;
pub const SSH_FX_LINK_LOOP: u32 = 21;
pub const SSH_FX_CANNOT_DELETE: u32 = 22;
pub const SSH_FX_INVALID_PARAMETER: u32 = 23;
pub const SSH_FX_FILE_IS_A_DIRECTORY: u32 = 24;
pub const SSH_FX_BYTE_RANGE_LOCK_CONFLICT: u32 = 25;
pub const SSH_FX_BYTE_RANGE_LOCK_REFUSED: u32 = 26;
pub const SSH_FX_DELETE_PENDING: u32 = 27;
pub const SSH_FX_FILE_CORRUPT: u32 = 28;
pub const SSH_FX_OWNER_INVALID: u32 = 29;
pub const SSH_FX_GROUP_INVALID: u32 = 30;
pub const SSH_FX_NO_MATCHING_BYTE_RANGE_LOCK: u32 = 31;

pub const SSH_FXF_READ: u32 = 0x01;
pub const SSH_FXF_WRITE: u32 = 0x02;
pub const SSH_FXF_APPEND: u32 = 0x04;
pub const SSH_FXF_CREAT: u32 = 0x08;
pub const SSH_FXF_TRUNC: u32 = 0x10;
pub const SSH_FXF_EXCL: u32 = 0x20;

const ATTR_SIZE: u32 = 0x1;
const ATTR_UIDGID: u32 = 0x2;
const ATTR_PERMISSIONS: u32 = 0x4;
const ATTR_ACMODTIME: u32 = 0x8;
const ATTR_EXTENDED: u32 = 0x8000_0000;

/// File attributes as SFTP v3 carries them; every field optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attrs {
    pub size: Option<u64>,
    pub uid_gid: Option<(u32, u32)>,
    pub permissions: Option<u32>,
    /// (atime, mtime), whole seconds since the epoch.
    pub atime_mtime: Option<(u32, u32)>,
}

impl Attrs {
    pub fn is_dir(&self) -> bool {
        self.file_type() == Some(libc::S_IFDIR)
    }

    pub fn is_symlink(&self) -> bool {
        self.file_type() == Some(libc::S_IFLNK)
    }

    pub fn file_type(&self) -> Option<u32> {
        self.permissions.map(|p| p & libc::S_IFMT)
    }

    fn encode(&self, b: &mut BytesMut) {
        let mut flags = 0;
        if self.size.is_some() {
            flags |= ATTR_SIZE;
        }
        if self.uid_gid.is_some() {
            flags |= ATTR_UIDGID;
        }
        if self.permissions.is_some() {
            flags |= ATTR_PERMISSIONS;
        }
        if self.atime_mtime.is_some() {
            flags |= ATTR_ACMODTIME;
        }
        b.put_u32(flags);
        if let Some(s) = self.size {
            b.put_u64(s);
        }
        if let Some((u, g)) = self.uid_gid {
            b.put_u32(u);
            b.put_u32(g);
        }
        if let Some(p) = self.permissions {
            b.put_u32(p);
        }
        if let Some((a, m)) = self.atime_mtime {
            b.put_u32(a);
            b.put_u32(m);
        }
    }

    fn decode(r: &mut Reader) -> Result<Attrs, DecodeError> {
        let flags = r.u32()?;
        let mut a = Attrs::default();
        if flags & ATTR_SIZE != 0 {
            a.size = Some(r.u64()?);
        }
        if flags & ATTR_UIDGID != 0 {
            a.uid_gid = Some((r.u32()?, r.u32()?));
        }
        if flags & ATTR_PERMISSIONS != 0 {
            a.permissions = Some(r.u32()?);
        }
        if flags & ATTR_ACMODTIME != 0 {
            a.atime_mtime = Some((r.u32()?, r.u32()?));
        }
        if flags & ATTR_EXTENDED != 0 {
            let n = r.u32()?;
            for _ in 0..n {
                r.string()?;
                r.string()?;
            }
        }
        Ok(a)
    }
}

/// One entry of a NAME reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameEntry {
    pub name: Vec<u8>,
    /// The link count, from the `ls -l`-style long name (OpenSSH puts it in the second
    /// column); the long name itself is not kept.
    pub nlink: Option<u32>,
    pub attrs: Attrs,
}

/// The link count from an OpenSSH long name (`-rw-r--r--    2 user group ...`), if present.
fn nlink_of(longname: &[u8]) -> Option<u32> {
    let s = std::str::from_utf8(longname).ok()?;
    let mut cols = s.split_ascii_whitespace();
    let mode = cols.next()?;
    if mode.len() != 10 {
        return None;
    }
    cols.next()?.parse().ok()
}

/// A decoded server reply (the request id is split off by the caller).
#[derive(Debug)]
pub enum Response {
    /// `message` is the server's text as [`server_text`] keeps it: cut and escaped.
    Status {
        code: u32,
        message: String,
    },
    Handle(Vec<u8>),
    Data(Bytes),
    Name(Vec<NameEntry>),
    Attrs(Attrs),
    ExtendedReply(Bytes),
}

/// A reply where another was expected, for an error message: names as text, escaped, and
/// only the first few; sizes rather than bytes.
impl std::fmt::Display for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Response::Status { code, message } => write!(f, "status {code} ({message})"),
            Response::Handle(h) => write!(f, "a handle of {} bytes", h.len()),
            Response::Data(d) => write!(f, "{} bytes of data", d.len()),
            Response::Attrs(_) => write!(f, "attributes"),
            Response::ExtendedReply(d) => write!(f, "an extended reply of {} bytes", d.len()),
            Response::Name(v) => {
                write!(f, "{} name(s)", v.len())?;
                for (i, e) in v.iter().take(3).enumerate() {
                    let sep = if i == 0 { ": " } else { ", " };
                    write!(f, "{sep}\"{}\"", server_text(&e.name))?;
                }
                if v.len() > 3 {
                    write!(f, ", …")?;
                }
                Ok(())
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed SFTP packet: {0}")]
pub struct DecodeError(pub &'static str);

/// Bounds-checked reader over a packet body; never trusts a length it was sent.
pub struct Reader {
    buf: Bytes,
}

impl Reader {
    pub fn new(buf: Bytes) -> Self {
        Reader { buf }
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        if self.buf.remaining() < 1 {
            return Err(DecodeError("truncated byte"));
        }
        Ok(self.buf.get_u8())
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        if self.buf.remaining() < 4 {
            return Err(DecodeError("truncated uint32"));
        }
        Ok(self.buf.get_u32())
    }

    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        if self.buf.remaining() < 8 {
            return Err(DecodeError("truncated uint64"));
        }
        Ok(self.buf.get_u64())
    }

    pub fn string(&mut self) -> Result<Bytes, DecodeError> {
        let n = self.u32()? as usize;
        if self.buf.remaining() < n {
            return Err(DecodeError("string longer than packet"));
        }
        Ok(self.buf.split_to(n))
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn remaining(&self) -> usize {
        self.buf.remaining()
    }

    /// What is left of the packet, as it is.
    pub fn rest(self) -> Bytes {
        self.buf
    }
}

/// Builds one request packet: length prefix, type, id, then fields.
pub struct Packet {
    buf: BytesMut,
}

impl Packet {
    pub fn new(kind: u8, id: u32) -> Self {
        let mut buf = BytesMut::with_capacity(64);
        buf.put_u32(0);
        buf.put_u8(kind);
        buf.put_u32(id);
        Packet { buf }
    }

    /// `SSH_FXP_INIT` has a version where other packets have an id.
    pub fn init(version: u32) -> Self {
        Self::new(SSH_FXP_INIT, version)
    }

    pub fn u32(mut self, v: u32) -> Self {
        self.buf.put_u32(v);
        self
    }

    pub fn u64(mut self, v: u64) -> Self {
        self.buf.put_u64(v);
        self
    }

    pub fn string(mut self, s: &[u8]) -> Self {
        self.buf.put_u32(s.len() as u32);
        self.buf.put_slice(s);
        self
    }

    pub fn attrs(mut self, a: &Attrs) -> Self {
        a.encode(&mut self.buf);
        self
    }

    pub fn finish(mut self) -> Bytes {
        let len = (self.buf.len() - 4) as u32;
        self.buf[..4].copy_from_slice(&len.to_be_bytes());
        self.buf.freeze()
    }
}

/// Decodes the body (after the length prefix) of a reply: returns its request id and content.
pub fn decode_response(body: Bytes) -> Result<(u32, Response), DecodeError> {
    let mut r = Reader::new(body);
    let kind = r.u8()?;
    let id = r.u32()?;
    let resp = match kind {
        SSH_FXP_STATUS => {
            let code = r.u32()?;
            // Some servers omit message and language; tolerate that.
            let message = if r.is_empty() {
                String::new()
            } else {
                server_text(&r.string()?)
            };
            Response::Status { code, message }
        }
        SSH_FXP_HANDLE => {
            let h = r.string()?;
            if h.len() > MAX_HANDLE {
                return Err(DecodeError(
                    "handle longer than the 256 bytes the protocol allows",
                ));
            }
            Response::Handle(h.to_vec())
        }
        SSH_FXP_DATA => Response::Data(r.string()?),
        SSH_FXP_NAME => {
            let count = r.u32()? as usize;
            // Each entry takes at least 12 bytes: a count the packet cannot hold is refused
            // before anything is allocated for it.
            if count > r.remaining() / 12 {
                return Err(DecodeError("NAME count larger than its packet holds"));
            }
            let mut entries = Vec::with_capacity(count);
            for _ in 0..count {
                let name = r.string()?.to_vec();
                let nlink = nlink_of(&r.string()?);
                let attrs = Attrs::decode(&mut r)?;
                entries.push(NameEntry { name, nlink, attrs });
            }
            Response::Name(entries)
        }
        SSH_FXP_ATTRS => Response::Attrs(Attrs::decode(&mut r)?),
        SSH_FXP_EXTENDED_REPLY => {
            let rest = r.buf.split_off(0);
            Response::ExtendedReply(rest)
        }
        _ => return Err(DecodeError("unknown reply type")),
    };
    Ok((id, resp))
}

/// Extension (name, data) pairs of a VERSION packet.
pub type ExtensionList = Vec<(Vec<u8>, Vec<u8>)>;

/// Decodes a VERSION packet body: the version and the extension pairs.
pub fn decode_version(body: Bytes) -> Result<(u32, ExtensionList), DecodeError> {
    let mut r = Reader::new(body);
    if r.u8()? != SSH_FXP_VERSION {
        return Err(DecodeError("expected VERSION"));
    }
    let version = r.u32()?;
    let mut exts = Vec::new();
    while !r.is_empty() {
        let name = r.string()?.to_vec();
        let data = r.string()?.to_vec();
        exts.push((name, data));
    }
    Ok((version, exts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(p: Bytes) -> Bytes {
        p.slice(4..)
    }

    #[test]
    fn packet_length_prefix_covers_body() {
        let p = Packet::new(SSH_FXP_LSTAT, 7).string(b"a\xe9b").finish();
        assert_eq!(&p[..4], &((p.len() - 4) as u32).to_be_bytes());
        assert_eq!(p[4], SSH_FXP_LSTAT);
        assert_eq!(&p[5..9], &7u32.to_be_bytes());
        assert_eq!(&p[13..], b"a\xe9b");
    }

    #[test]
    fn attrs_round_trip() {
        let a = Attrs {
            size: Some(1 << 40),
            uid_gid: Some((1000, 100)),
            permissions: Some(0o100644),
            atime_mtime: Some((1, 2)),
        };
        let p = Packet::new(SSH_FXP_ATTRS, 1).attrs(&a).finish();
        let (id, r) = decode_response(body(p)).unwrap();
        assert_eq!(id, 1);
        match r {
            Response::Attrs(b) => assert_eq!(a, b),
            other => panic!("{other:?}"),
        }
        let empty = Packet::new(SSH_FXP_ATTRS, 2)
            .attrs(&Attrs::default())
            .finish();
        assert!(
            matches!(decode_response(body(empty)), Ok((2, Response::Attrs(a))) if a == Attrs::default())
        );
    }

    #[test]
    fn name_reply_keeps_bytes_and_link_count() {
        let p = Packet::new(SSH_FXP_NAME, 3)
            .u32(2)
            .string(b"caf\xe9")
            .string(b"-rw-r--r--    2 root     root            5 Jan  1 00:00 caf\xe9")
            .attrs(&Attrs::default())
            .string(b"x")
            .string(b"-rw-r--r--    2 root root 5 Jan  1 00:00 x")
            .attrs(&Attrs::default())
            .finish();
        let (_, r) = decode_response(body(p)).unwrap();
        let Response::Name(v) = r else { panic!() };
        assert_eq!(v[0].name, b"caf\xe9");
        assert_eq!(v[0].nlink, None, "non-UTF-8 longname is not parsed");
        assert_eq!(v[1].nlink, Some(2));
    }

    #[test]
    fn replies_past_the_bounds_are_refused_or_cut() {
        // A handle longer than the protocol allows.
        let p = Packet::new(SSH_FXP_HANDLE, 9).string(&[1; 257]).finish();
        assert!(decode_response(body(p)).is_err());
        let p = Packet::new(SSH_FXP_HANDLE, 9).string(&[1; 256]).finish();
        assert!(decode_response(body(p)).is_ok());
        // A status message of a megabyte is kept as a few hundred bytes.
        let p = Packet::new(SSH_FXP_STATUS, 9)
            .u32(SSH_FX_FAILURE)
            .string(&vec![b'x'; 1 << 20])
            .string(b"en")
            .finish();
        let (_, r) = decode_response(body(p)).unwrap();
        let Response::Status { message, .. } = r else {
            panic!()
        };
        assert!(message.len() < 400 && message.contains("cut"), "{message}");
        // A NAME reply printed in an error: names as text, escaped, never as byte arrays.
        let p = Packet::new(SSH_FXP_NAME, 3)
            .u32(2)
            .string(b"/srv/\x1b[31mred")
            .string(b"")
            .attrs(&Attrs::default())
            .string(b"/other")
            .string(b"")
            .attrs(&Attrs::default())
            .finish();
        let (_, r) = decode_response(body(p)).unwrap();
        assert_eq!(
            r.to_string(),
            "2 name(s): \"/srv/\\u{1b}[31mred\", \"/other\""
        );
    }

    #[test]
    fn handle_bytes_survive() {
        let p = Packet::new(SSH_FXP_HANDLE, 9)
            .string(&[0, 0, 0, 0x80])
            .finish();
        let (_, r) = decode_response(body(p)).unwrap();
        assert!(matches!(r, Response::Handle(h) if h == [0, 0, 0, 0x80]));
    }

    #[test]
    fn malformed_packets_are_errors_not_panics() {
        // A NAME claiming four billion entries in a tiny packet, or 100 in 1000 bytes.
        let p = Packet::new(SSH_FXP_NAME, 1).u32(u32::MAX).finish();
        assert!(decode_response(body(p)).is_err());
        let p = Packet::new(SSH_FXP_NAME, 1).u32(100).u64(0).finish();
        assert!(decode_response(body(p)).is_err());
        // A string longer than the packet.
        let p = Packet::new(SSH_FXP_HANDLE, 1).u32(1000).finish();
        assert!(decode_response(body(p)).is_err());
        assert!(decode_response(Bytes::from_static(&[SSH_FXP_STATUS, 0])).is_err());
        assert!(decode_response(Bytes::new()).is_err());
        let p = Packet::new(99, 1).finish();
        assert!(decode_response(body(p)).is_err());
    }

    #[test]
    fn version_with_extensions() {
        let p = Packet::new(SSH_FXP_VERSION, 3)
            .string(b"posix-rename@openssh.com")
            .string(b"1")
            .finish();
        let (v, e) = decode_version(body(p)).unwrap();
        assert_eq!(v, 3);
        assert_eq!(
            e,
            vec![(b"posix-rename@openssh.com".to_vec(), b"1".to_vec())]
        );
    }
}
