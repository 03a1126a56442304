//! File-name character sets (sshfs's `from_code=` / `to_code=`, libfuse's iconv module): names
//! are kept in the server's character set on the server and shown in the local one. The core
//! keeps local names everywhere; these conversions happen where names cross to the server
//! (`Filesystem::remote`, symlink targets) and back (listings, readlink).
//!
//! A server name that does not convert cleanly and reversibly is shown as it is ("raw"), and
//! the path it was listed under is remembered, so that it maps back to the same bytes: libfuse
//! drops such names from listings; here they stay visible and usable. Remembered by path (not
//! by name alone) so that a stray legacy name in one directory (`caf\xe9` on a UTF-8 server)
//! cannot capture the properly encoded `café` of another directory.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Mutex;

use encoding_rs::Encoding;

/// A character set of file names: ASCII-compatible, so `/` is byte 0x2F on both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// True ISO-8859-1: byte b is U+00bb (WHATWG's labels for it mean windows-1252).
    Latin1,
    /// True US-ASCII: bytes above 0x7F do not convert (WHATWG: windows-1252 again).
    Ascii,
    Whatwg(&'static Encoding),
}

/// Why a character set name is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CharsetError {
    Unknown,
    /// UTF-16, UTF-32, ISO-2022-*: `/` would not be byte 0x2F.
    NotAsciiCompatible,
}

/// Normalized names (lower case, without `-`, `_` and spaces) of ISO-8859-1 and of ASCII.
const LATIN1: &[&str] = &[
    "iso88591",
    "iso88591:1987",
    "latin1",
    "l1",
    "isoir100",
    "cp819",
    "ibm819",
    "csisolatin1",
    "88591",
];
const ASCII: &[&str] = &[
    "ascii",
    "usascii",
    "us",
    "ansix3.41968",
    "ansix3.41986",
    "iso646us",
    "iso646.irv:1991",
    "646",
    "csascii",
    "isoir6",
    "ibm367",
    "cp367",
];

impl Charset {
    /// The character set called `name`: iconv's spellings (`UTF8`, `EUC-JP`, `CP1251`,
    /// `SHIFT_JIS`, `ISO_8859-2`...) and WHATWG's labels, in any case.
    pub fn by_name(name: &str) -> Result<Charset, CharsetError> {
        let norm: String = name
            .trim()
            .chars()
            .filter(|c| !matches!(c, '-' | '_' | ' '))
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if LATIN1.contains(&norm.as_str()) {
            return Ok(Charset::Latin1);
        }
        if ASCII.contains(&norm.as_str()) {
            return Ok(Charset::Ascii);
        }
        let enc = Encoding::for_label(name.trim().as_bytes())
            .or_else(|| iconv_alias(&norm).and_then(|l| Encoding::for_label(l.as_bytes())));
        match enc {
            Some(e) if e.is_ascii_compatible() => Ok(Charset::Whatwg(e)),
            Some(_) => Err(CharsetError::NotAsciiCompatible),
            None if ["utf16", "utf32", "ucs2", "ucs4", "utf7"]
                .iter()
                .any(|p| norm.starts_with(p)) =>
            {
                Err(CharsetError::NotAsciiCompatible)
            }
            None => Err(CharsetError::Unknown),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Charset::Latin1 => "ISO-8859-1",
            Charset::Ascii => "US-ASCII",
            Charset::Whatwg(e) => e.name(),
        }
    }

    /// `None`: not valid in this character set.
    fn decode<'a>(&self, b: &'a [u8]) -> Option<Cow<'a, str>> {
        match self {
            Charset::Latin1 => Some(Cow::Owned(b.iter().map(|&c| c as char).collect())),
            Charset::Ascii => std::str::from_utf8(b)
                .ok()
                .filter(|s| s.is_ascii())
                .map(Cow::Borrowed),
            Charset::Whatwg(e) => e.decode_without_bom_handling_and_without_replacement(b),
        }
    }

    /// `None`: a character this set lacks.
    fn encode<'a>(&self, s: &'a str) -> Option<Cow<'a, [u8]>> {
        match self {
            Charset::Latin1 => s
                .chars()
                .map(|c| u8::try_from(u32::from(c)).ok())
                .collect::<Option<Vec<u8>>>()
                .map(Cow::Owned),
            Charset::Ascii => s.is_ascii().then_some(Cow::Borrowed(s.as_bytes())),
            Charset::Whatwg(e) => {
                let (out, used, unmappable) = e.encode(s);
                (!unmappable && used == *e).then_some(out)
            }
        }
    }
}

/// iconv's names that are not WHATWG labels, normalized as in [`Charset::by_name`].
fn iconv_alias(norm: &str) -> Option<Cow<'static, str>> {
    let fixed = match norm {
        "utf8" => "utf-8",
        "eucjp" | "ujis" => "euc-jp",
        "euckr" | "cp949" | "uhc" => "euc-kr",
        "shiftjis" | "sjis" | "cp932" | "mskanji" | "windows31j" => "shift_jis",
        "koi8r" => "koi8-r",
        "koi8u" | "koi8ru" => "koi8-u",
        "gb2312" | "gbk" | "cp936" | "euccn" => "gbk",
        "big5" | "big5hkscs" | "cp950" => "big5",
        "tis620" | "cp874" => "windows-874",
        "macroman" | "macintosh" | "mac" => "macintosh",
        "cp866" | "ibm866" => "ibm866",
        _ => "",
    };
    if !fixed.is_empty() {
        return Some(Cow::Borrowed(fixed));
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(n) = norm.strip_prefix("iso8859").filter(|n| digits(n)) {
        return Some(Cow::Owned(format!("iso-8859-{n}")));
    }
    if let Some(n) = norm
        .strip_prefix("cp")
        .or_else(|| norm.strip_prefix("windows"))
        .filter(|n| digits(n))
    {
        return Some(Cow::Owned(format!("windows-{n}")));
    }
    None
}

/// `b` converted from `from` to `to`, if every character converts and converting back gives
/// `b` again (so that the name maps back to the same server bytes).
fn convert<'a>(from: Charset, to: Charset, b: &'a [u8]) -> Option<Cow<'a, [u8]>> {
    // ASCII is itself in every ASCII-compatible set.
    if b.is_ascii() {
        return Some(Cow::Borrowed(b));
    }
    let s = from.decode(b)?;
    let out = to.encode(&s)?.into_owned();
    let back = to.decode(&out)?;
    (from.encode(&back)?.as_ref() == b).then_some(Cow::Owned(out))
}

fn components(p: &[u8]) -> impl Iterator<Item = &[u8]> {
    p.split(|&b| b == b'/')
}

fn last_component(p: &[u8]) -> &[u8] {
    p.rsplit(|&b| b == b'/').next().unwrap_or(p)
}

/// Converts each component of `p` with `f`, keeping the `/`s; borrowed when nothing changed.
fn map_components<'a>(
    p: &'a [u8],
    mut f: impl FnMut(usize, &[u8]) -> Option<Cow<'_, [u8]>>,
) -> Option<Cow<'a, [u8]>> {
    if p.is_ascii() {
        return Some(Cow::Borrowed(p));
    }
    let mut out = Vec::with_capacity(p.len() + 8);
    let mut end = 0;
    for (i, c) in components(p).enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        end += c.len() + usize::from(i > 0);
        out.extend_from_slice(&f(end, c)?);
    }
    Some(if out == p {
        Cow::Borrowed(p)
    } else {
        Cow::Owned(out)
    })
}

/// The two character sets of a mount and the raw names seen so far.
#[derive(Debug)]
pub struct NameCharsets {
    server: Charset,
    local: Charset,
    raw: Mutex<Raw>,
}

#[derive(Debug, Default)]
struct Raw {
    /// Local paths (relative to the mount root) of names listed raw: they map to themselves.
    paths: HashSet<Vec<u8>>,
    /// The names themselves: such a name may be given to a new file (`creatable`).
    names: HashSet<Vec<u8>>,
}

impl NameCharsets {
    /// `None` when both sides use the same character set: nothing to convert.
    pub fn new(server: Charset, local: Charset) -> Option<NameCharsets> {
        (server != local).then(|| NameCharsets {
            server,
            local,
            raw: Mutex::default(),
        })
    }

    pub fn server(&self) -> Charset {
        self.server
    }

    pub fn local(&self) -> Charset {
        self.local
    }

    /// A server name as shown locally, converted; `None`: it does not convert (it is shown raw).
    pub fn to_local<'a>(&self, server_name: &'a [u8]) -> Option<Cow<'a, [u8]>> {
        convert(self.server, self.local, server_name)
    }

    /// A local name in the server's character set; `None`: it does not convert.
    pub fn to_server<'a>(&self, local_name: &'a [u8]) -> Option<Cow<'a, [u8]>> {
        convert(self.local, self.server, local_name)
    }

    /// The local names of the entries of a listing of directory `dir` (a local path): each
    /// converted, or raw (remembered, so that it maps back to the same bytes). `None` for a raw
    /// name that a converted name of the same listing also shows as: that one wins.
    pub fn listed<'a>(
        &self,
        dir: &[u8],
        server_names: impl Iterator<Item = &'a [u8]>,
    ) -> Vec<Option<Vec<u8>>> {
        let shown: Vec<(Vec<u8>, bool)> = server_names
            .map(|s| match self.to_local(s) {
                Some(l) => (l.into_owned(), false),
                None => (s.to_vec(), true),
            })
            .collect();
        if shown.iter().all(|(_, raw)| !raw) && shown.iter().all(|(n, _)| n.is_ascii()) {
            return shown.into_iter().map(|(n, _)| Some(n)).collect();
        }
        let converted: HashSet<&[u8]> = shown
            .iter()
            .filter(|(_, raw)| !raw)
            .map(|(n, _)| n.as_slice())
            .collect();
        let mut r = self.raw.lock().unwrap();
        let mut out = Vec::with_capacity(shown.len());
        for (name, raw) in &shown {
            let path = crate::fs::names::inode::join(dir, name);
            if !raw {
                r.paths.remove(&path);
                out.push(Some(name.clone()));
            } else if converted.contains(name.as_slice()) {
                tracing::debug!(
                    "name {:?} in {:?} is not in {}; hidden: another name shows as it",
                    String::from_utf8_lossy(name),
                    String::from_utf8_lossy(dir),
                    self.server.name()
                );
                out.push(None);
            } else {
                r.names.insert(name.clone());
                r.paths.insert(path);
                out.push(Some(name.clone()));
            }
        }
        out
    }

    /// A local path (relative to the mount root) as the server's path: component by
    /// component, a raw name as it is.
    pub fn server_path<'a>(&self, rel: &'a [u8]) -> Cow<'a, [u8]> {
        if rel.is_ascii() {
            return Cow::Borrowed(rel);
        }
        let r = self.raw.lock().unwrap();
        map_components(rel, |end, c| {
            if r.paths.contains(&rel[..end]) {
                return Some(Cow::Borrowed(c));
            }
            Some(self.to_server(c).unwrap_or(Cow::Borrowed(c)))
        })
        .expect("never refused")
    }

    /// Whether a new file may be called by the last component of `rel` (libfuse's iconv says
    /// EILSEQ otherwise): its name converts, or is one the server already uses raw. Any other
    /// name would be made on the server under bytes that list as another name.
    pub fn creatable(&self, rel: &[u8]) -> bool {
        let name = last_component(rel);
        name.is_ascii()
            || self.to_server(name).is_some()
            || self.raw.lock().unwrap().names.contains(name)
    }

    /// Whether the lookup of `rel` should wait for its directory's listing: its name is not
    /// yet known as raw there, but could be a raw server name (it would list as itself) and
    /// would otherwise be converted to other bytes.
    pub fn might_be_raw(&self, rel: &[u8]) -> bool {
        let name = last_component(rel);
        !name.is_ascii()
            && self.to_local(name).is_none()
            && self.to_server(name).is_some()
            && !self.raw.lock().unwrap().paths.contains(rel)
    }

    /// Before `from` is renamed (or linked) to `to`: a raw name moved under the same name
    /// keeps its bytes.
    pub fn keep_raw(&self, from: &[u8], to: &[u8]) {
        let mut r = self.raw.lock().unwrap();
        if last_component(from) == last_component(to) && r.paths.contains(from) {
            r.paths.insert(to.to_vec());
        }
    }

    /// After directory `from` was renamed to `to`: the raw names below it are below `to`.
    pub fn renamed(&self, from: &[u8], to: &[u8]) {
        let mut r = self.raw.lock().unwrap();
        let moved: Vec<Vec<u8>> = r
            .paths
            .iter()
            .filter_map(|p| p.strip_prefix(from)?.strip_prefix(b"/"))
            .map(|rest| [to, b"/", rest].concat())
            .collect();
        r.paths.extend(moved);
    }

    /// A symlink target from the server, as shown locally: each component converted, or raw.
    pub fn target_to_local<'a>(&self, target: &'a [u8]) -> Cow<'a, [u8]> {
        map_components(target, |_, c| {
            Some(self.to_local(c).unwrap_or(Cow::Borrowed(c)))
        })
        .expect("never refused")
    }

    /// A symlink target given locally, for the server; `None` (EILSEQ) when a component
    /// neither converts nor would read back as itself (a raw server name).
    pub fn target_to_server<'a>(&self, target: &'a [u8]) -> Option<Cow<'a, [u8]>> {
        map_components(target, |_, c| match self.to_server(c) {
            Some(s) => Some(s),
            None => self.to_local(c).is_none().then_some(Cow::Borrowed(c)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cs(server: &str, local: &str) -> NameCharsets {
        NameCharsets::new(
            Charset::by_name(server).unwrap(),
            Charset::by_name(local).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn names_iconv_spells() {
        use encoding_rs::*;
        for (name, want) in [
            ("UTF-8", Charset::Whatwg(UTF_8)),
            ("utf8", Charset::Whatwg(UTF_8)),
            ("UTF8", Charset::Whatwg(UTF_8)),
            ("ISO-8859-1", Charset::Latin1),
            ("iso8859-1", Charset::Latin1),
            ("ISO_8859-1", Charset::Latin1),
            ("latin1", Charset::Latin1),
            ("L1", Charset::Latin1),
            ("iso88591", Charset::Latin1),
            ("ANSI_X3.4-1968", Charset::Ascii),
            ("US-ASCII", Charset::Ascii),
            ("EUC-JP", Charset::Whatwg(EUC_JP)),
            ("eucJP", Charset::Whatwg(EUC_JP)),
            ("CP1251", Charset::Whatwg(WINDOWS_1251)),
            ("windows-1251", Charset::Whatwg(WINDOWS_1251)),
            ("SHIFT_JIS", Charset::Whatwg(SHIFT_JIS)),
            ("SJIS", Charset::Whatwg(SHIFT_JIS)),
            ("CP932", Charset::Whatwg(SHIFT_JIS)),
            ("KOI8-R", Charset::Whatwg(KOI8_R)),
            ("ISO-8859-2", Charset::Whatwg(ISO_8859_2)),
            ("ISO_8859-2", Charset::Whatwg(ISO_8859_2)),
            ("iso88592", Charset::Whatwg(ISO_8859_2)),
            ("ISO-8859-15", Charset::Whatwg(ISO_8859_15)),
            ("GBK", Charset::Whatwg(GBK)),
            ("EUC-KR", Charset::Whatwg(EUC_KR)),
            ("BIG5", Charset::Whatwg(BIG5)),
        ] {
            assert_eq!(Charset::by_name(name), Ok(want), "{name}");
        }
        for name in [
            "UTF-16",
            "utf-16le",
            "UTF-32",
            "UCS-2",
            "ISO-2022-JP",
            "ISO-2022-KR",
        ] {
            assert_eq!(
                Charset::by_name(name),
                Err(CharsetError::NotAsciiCompatible),
                "{name}"
            );
        }
        for name in ["bogus", "", "UTF-9"] {
            assert_eq!(Charset::by_name(name), Err(CharsetError::Unknown), "{name}");
        }
        assert!(NameCharsets::new(Charset::Latin1, Charset::by_name("l1").unwrap()).is_none());
        assert!(NameCharsets::new(
            Charset::by_name("UTF8").unwrap(),
            Charset::by_name("utf-8").unwrap()
        )
        .is_none());
    }

    #[test]
    fn latin1_server_round_trips_every_byte() {
        let c = cs("ISO-8859-1", "UTF-8");
        for b in 1..=255u8 {
            if b == b'/' {
                continue;
            }
            let byte = [b];
            let local = c.to_local(&byte).expect("every byte is Latin-1");
            let ch = char::from(b);
            assert_eq!(local.as_ref(), ch.to_string().as_bytes(), "byte {b:#x}");
            assert_eq!(c.to_server(&local).unwrap().as_ref(), [b], "byte {b:#x}");
        }
        // The C1 range is Latin-1's own, not windows-1252's (0x80 is not the euro sign).
        assert_eq!(c.to_local(b"\x80").unwrap().as_ref(), "\u{80}".as_bytes());
        let all: Vec<u8> = (1..=255u8).filter(|&b| b != b'/').collect();
        let local = c.to_local(&all).unwrap().into_owned();
        assert_eq!(c.to_server(&local).unwrap().as_ref(), all.as_slice());
        assert_eq!(c.to_local(b"caf\xe9").unwrap().as_ref(), "café".as_bytes());
        // A character Latin-1 lacks, and bytes that are not UTF-8, do not convert.
        assert!(c.to_server("€uro".as_bytes()).is_none());
        assert!(c.to_server("日本".as_bytes()).is_none());
        assert!(c.to_server(b"caf\xe9").is_none());
        assert!(!c.creatable("€uro".as_bytes()));
        assert!(!c.creatable("a/日本".as_bytes()));
        assert!(c.creatable("dir/résumé.txt".as_bytes()));
        assert!(c.creatable(b"plain"));
        assert_eq!(
            c.server_path("Ünïcode/résumé.txt".as_bytes()).as_ref(),
            b"\xdcn\xefcode/r\xe9sum\xe9.txt"
        );
        assert_eq!(
            c.target_to_server("../café/x".as_bytes()).unwrap().as_ref(),
            b"../caf\xe9/x"
        );
        assert_eq!(
            c.target_to_local(b"/srv/caf\xe9").as_ref(),
            "/srv/café".as_bytes()
        );
        assert!(c.target_to_server("../€".as_bytes()).is_none());
    }

    #[test]
    fn euc_jp() {
        let c = cs("EUC-JP", "UTF-8");
        let euc = b"\xc6\xfc\xcb\xdc\xb8\xec.txt"; // 日本語.txt
        assert_eq!(c.to_local(euc).unwrap().as_ref(), "日本語.txt".as_bytes());
        assert_eq!(c.to_server("日本語.txt".as_bytes()).unwrap().as_ref(), euc);
        // Not EUC-JP (a lone lead byte): listed raw, maps back to itself.
        let bad = b"x\xc6";
        assert!(c.to_local(bad).is_none());
        let shown = c.listed(b"d", [&bad[..], &euc[..]].into_iter());
        assert_eq!(shown[0].as_deref(), Some(&bad[..]));
        assert_eq!(shown[1].as_deref(), Some("日本語.txt".as_bytes()));
        assert_eq!(c.server_path(b"d/x\xc6").as_ref(), b"d/x\xc6");
        assert!(c.creatable(b"x\xc6"), "a known raw name");
        // A character EUC-JP lacks.
        assert!(!c.creatable("한국".as_bytes()));
        // The other way: a UTF-8 server, an EUC-JP local side.
        let c = cs("UTF-8", "EUC-JP");
        assert_eq!(c.to_local("日本語.txt".as_bytes()).unwrap().as_ref(), euc);
        assert!(c.to_local("한국".as_bytes()).is_none());
    }

    #[test]
    fn utf8_server_latin1_local() {
        let c = cs("UTF-8", "ISO-8859-1");
        let jp = "日本.txt".as_bytes();
        let legacy = b"caf\xe9"; // a Latin-1 name on a UTF-8 server: not UTF-8
        let good = "café".as_bytes();
        let shown = c.listed(b"a", [jp, &legacy[..]].into_iter());
        // Both pass raw, as their bytes.
        assert_eq!(shown[0].as_deref(), Some(jp));
        assert_eq!(shown[1].as_deref(), Some(&legacy[..]));
        // ...and map back to the same bytes, also below them.
        assert_eq!(c.server_path(b"a/caf\xe9").as_ref(), b"a/caf\xe9");
        let mut p = b"a/".to_vec();
        p.extend_from_slice(jp);
        assert_eq!(c.server_path(&p).as_ref(), p.as_slice());
        p.extend_from_slice(b"/caf\xe9");
        assert_eq!(
            &c.server_path(&p)[..],
            [b"a/", jp, b"/caf\xc3\xa9"].concat()
        );
        // The raw `caf\xe9` of directory a does not capture the UTF-8 `café` of b.
        let shown = c.listed(b"b", [good].into_iter());
        assert_eq!(shown[0].as_deref(), Some(&legacy[..]));
        assert_eq!(c.server_path(b"b/caf\xe9").as_ref(), b"b/caf\xc3\xa9");
        // Both in one directory: the converted one wins, the raw one is hidden.
        let shown = c.listed(b"c", [&legacy[..], good].into_iter());
        assert_eq!(shown[0], None);
        assert_eq!(shown[1].as_deref(), Some(&legacy[..]));
        assert_eq!(c.server_path(b"c/caf\xe9").as_ref(), b"c/caf\xc3\xa9");
        // Directory a renamed: its raw names move along.
        c.renamed(b"a", b"z");
        let mut z = b"z/".to_vec();
        z.extend_from_slice(jp);
        assert_eq!(c.server_path(&z).as_ref(), z.as_slice());
        // A raw name moved to another directory keeps its bytes.
        let mut from = b"a/".to_vec();
        from.extend_from_slice(jp);
        let mut to = b"n/".to_vec();
        to.extend_from_slice(jp);
        assert!(c.might_be_raw(&to));
        c.keep_raw(&from, &to);
        assert_eq!(c.server_path(&to).as_ref(), to.as_slice());
        assert!(!c.might_be_raw(&to));
        // Every Latin-1 name is creatable (it converts to UTF-8).
        assert!(c.creatable(b"r\xe9sum\xe9"));
        assert_eq!(c.server_path(b"r\xe9sum\xe9").as_ref(), "résumé".as_bytes());
        // A target naming a raw server name reads back as it is.
        assert_eq!(c.target_to_local(jp).as_ref(), jp);
        assert_eq!(
            c.target_to_server(b"../caf\xe9").unwrap().as_ref(),
            b"../caf\xc3\xa9"
        );
    }

    #[test]
    fn creatable() {
        let c = cs("ISO-8859-1", "UTF-8");
        assert!(c.creatable(b"ascii.txt"));
        assert!(c.creatable("dir/Ünïcode".as_bytes()));
        assert!(!c.creatable("dir/€uro".as_bytes()));
        // Not UTF-8 locally: it would list as another name.
        assert!(!c.creatable(b"dir/caf\xe9"));
        let c = cs("UTF-8", "ASCII");
        assert!(!c.creatable("日本".as_bytes()), "not ASCII, never seen");
        c.listed(b"", ["日本".as_bytes()].into_iter());
        assert!(c.creatable("x/日本".as_bytes()), "a known raw name");
        assert_eq!(c.server_path("日本".as_bytes()).as_ref(), "日本".as_bytes());
        // Not seen in x: no conversion, so the bytes as they are (which list raw again).
        assert_eq!(
            c.server_path("x/日本".as_bytes()).as_ref(),
            "x/日本".as_bytes()
        );
        assert!(c.target_to_server("日本".as_bytes()).is_some());
        assert!(
            c.target_to_server(b"\xff").is_some(),
            "not UTF-8: reads back raw"
        );
    }
}
