//! Hash commands as `sh` scripts. The exec channel runs plain `sh` (the login shell only
//! starts it, whatever shell that is), which reads the script from its standard input: file
//! names never pass through the login shell, and in the script each one is a single-quoted
//! word ([`quote`]), so any byte but NUL stays itself (spaces, quotes, newlines, `$(...)`,
//! backticks, bytes that are not UTF-8). Paths are absolute: none starts with `-`.

use super::algo::{unhex, Algo};

/// `bytes` as one single-quoted `sh` word: `'` ends the quote, an escaped `'` follows, and
/// the quote opens again (`it's` → `'it'\''s'`).
pub fn quote(bytes: &[u8]) -> Vec<u8> {
    let mut q = Vec::with_capacity(bytes.len() + 2);
    q.push(b'\'');
    for &b in bytes {
        if b == b'\'' {
            q.extend_from_slice(b"'\\''");
        } else {
            q.push(b);
        }
    }
    q.push(b'\'');
    q
}

/// A hash command the server has, found by [`probe_script`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    pub algo: Algo,
    /// The program, one of [`CANDIDATES`].
    pub program: &'static str,
    /// GNU's `-z`: many files in one run, names printed as they are, records ending in NUL.
    pub zero: bool,
    /// BSD's `sha256 -q`: prints the digest alone.
    pub bsd: bool,
}

/// The programs looked for: GNU coreutils' (Linux), then BSD's (`sha256 -q`).
pub const CANDIDATES: [(&str, Algo, bool); 13] = [
    ("sha256sum", Algo::Sha256, false),
    ("sha512sum", Algo::Sha512, false),
    ("b2sum", Algo::Blake2b, false),
    ("sha384sum", Algo::Sha384, false),
    ("sha224sum", Algo::Sha224, false),
    ("sha1sum", Algo::Sha1, false),
    ("md5sum", Algo::Md5, false),
    ("sha256", Algo::Sha256, true),
    ("sha512", Algo::Sha512, true),
    ("sha384", Algo::Sha384, true),
    ("sha224", Algo::Sha224, true),
    ("sha1", Algo::Sha1, true),
    ("md5", Algo::Md5, true),
];

/// The last line of a probe that ran through: a server that answers with anything else
/// (an SFTP server forced on every command, a menu) has no shell for us.
pub const PROBE_DONE: &str = "sftpfs-probe-done";

/// Finds which hash programs the server has and checks that each computes what it should
/// (its digest of `abc`), and which take GNU's `-z`.
pub fn probe_script() -> Vec<u8> {
    let mut s = String::from("set -f\n");
    for (program, _, bsd) in CANDIDATES {
        let flag = if bsd { " -q" } else { "" };
        s.push_str(&format!(
            "if command -v {program} >/dev/null 2>&1; then \
             r=$(printf abc | {program}{flag} 2>/dev/null) && set -- $r && \
             printf 'tool {program} %s\\n' \"$1\"; \
             {program} -z /dev/null >/dev/null 2>&1 && printf 'zero {program}\\n'; fi\n"
        ));
    }
    s.push_str(&format!("printf '{PROBE_DONE}\\n'\n"));
    s.into_bytes()
}

/// The tools a probe's output shows to work; `None` when the probe did not run through.
pub fn parse_probe(out: &[u8]) -> Option<Vec<Tool>> {
    let text = String::from_utf8_lossy(out);
    if !text.lines().any(|l| l == PROBE_DONE) {
        return None;
    }
    let mut tools: Vec<Tool> = Vec::new();
    for line in text.lines() {
        let mut w = line.split(' ');
        match (w.next(), w.next(), w.next()) {
            (Some("tool"), Some(p), Some(digest)) => {
                let Some(&(program, algo, bsd)) = CANDIDATES.iter().find(|c| c.0 == p) else {
                    continue;
                };
                // A program of that name that does not compute that algorithm is not used.
                if unhex(algo, digest.as_bytes()).as_deref() != Some(&algo.digest(b"abc")[..]) {
                    continue;
                }
                if !tools.iter().any(|t| t.algo == algo) {
                    tools.push(Tool {
                        algo,
                        program,
                        zero: false,
                        bsd,
                    });
                }
            }
            (Some("zero"), Some(p), None) => {
                if let Some(t) = tools.iter_mut().find(|t| t.program == p && !t.bsd) {
                    t.zero = true;
                }
            }
            _ => {}
        }
    }
    Some(tools)
}

/// What to run on one file, in [`per_file_script`]: a tool reading the file on its standard
/// input, or the user's `hash_command`, with `%s` for the path.
#[derive(Debug, Clone)]
pub enum PerFile<'a> {
    Tool(&'a Tool),
    Template(&'a str),
}

/// Tells apart the failures of one file without running anything (`test` is a builtin).
const PER_FILE_FUNCTION: &str = "h() {\n\
  if [ -d \"$1\" ]; then echo 'err EISDIR'\n\
  elif [ ! -e \"$1\" ]; then echo 'err ENOENT'\n\
  elif [ ! -f \"$1\" ]; then echo 'err EINVAL'\n\
  elif [ ! -r \"$1\" ]; then echo 'err EACCES'\n\
  elif r=$(CMD 2>/dev/null) && set -- $r && [ $# -gt 0 ]; then printf 'ok %s\\n' \"$1\"\n\
  else echo 'err EIO'; fi\n\
}\n";

/// One line per path, in order: `ok DIGEST` or `err ERRNO-NAME`. The paths are the
/// arguments of a shell function, each quoted; the command reads `"$1"`.
pub fn per_file_script(how: &PerFile<'_>, paths: &[&[u8]]) -> Vec<u8> {
    let cmd = match how {
        PerFile::Tool(t) if t.bsd => format!("{} -q < \"$1\"", t.program),
        PerFile::Tool(t) => format!("{} < \"$1\"", t.program),
        PerFile::Template(t) => t.replace("%s", "\"$1\""),
    };
    let mut s = b"set -f\n".to_vec();
    s.extend_from_slice(PER_FILE_FUNCTION.replace("CMD", &cmd).as_bytes());
    for p in paths {
        s.extend_from_slice(b"h ");
        s.extend_from_slice(&quote(p));
        s.push(b'\n');
    }
    s
}

/// What one path's line of [`per_file_script`] said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Digest(Vec<u8>),
    /// The errno the script named (ENOENT, EISDIR, EINVAL, EACCES, EIO).
    Failed(i32),
}

/// The answers of a per-file run, one per path; a line missing or not a digest of `algo` is
/// EIO (the script stopped, the command printed something else).
pub fn parse_per_file(algo: Algo, out: &[u8], n: usize) -> Vec<Answer> {
    let mut lines = out.split(|&b| b == b'\n');
    (0..n)
        .map(|_| {
            let line = lines.next().unwrap_or_default();
            if let Some(d) = line.strip_prefix(b"ok ") {
                // GNU tools mark a line whose name they escaped with a leading backslash.
                let d = d.strip_prefix(b"\\").unwrap_or(d);
                return match unhex(algo, d) {
                    Some(d) => Answer::Digest(d),
                    None => Answer::Failed(libc::EIO),
                };
            }
            Answer::Failed(match line {
                b"err ENOENT" => libc::ENOENT,
                b"err EISDIR" => libc::EISDIR,
                b"err EINVAL" => libc::EINVAL,
                b"err EACCES" => libc::EACCES,
                _ => libc::EIO,
            })
        })
        .collect()
}

/// Many files in one run of a GNU tool (`sha256sum -z -- 'a' 'b' ...`): one record a file
/// hashed, `DIGEST  PATH` (or `DIGEST *PATH`) ending in NUL, the name as given. A file that
/// cannot be hashed has no record (its error goes to standard error, dropped).
pub fn batch_script(tool: &Tool, paths: &[&[u8]]) -> Vec<u8> {
    let mut s = format!("set -f\n{} -z --", tool.program).into_bytes();
    for p in paths {
        s.extend_from_slice(b" ");
        s.extend_from_slice(&quote(p));
    }
    s.extend_from_slice(b" 2>/dev/null\nexit 0\n");
    s
}

/// The digests of a batch run, by path: `None` for a path that has no record.
pub fn parse_batch(algo: Algo, out: &[u8], paths: &[&[u8]]) -> Vec<Option<Vec<u8>>> {
    let mut found: std::collections::HashMap<&[u8], Vec<u8>> = Default::default();
    let hexlen = algo.digest_len() * 2;
    for rec in out.split(|&b| b == 0) {
        if rec.len() < hexlen + 2 {
            continue;
        }
        let (digest, rest) = rec.split_at(hexlen);
        let name = match rest {
            [b' ', b' ' | b'*', name @ ..] => name,
            _ => continue,
        };
        if let Some(d) = unhex(algo, digest) {
            found.insert(name, d);
        }
    }
    paths.iter().map(|p| found.get(p).cloned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `script` in the local `sh`, as the server's would.
    fn sh(script: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut c = std::process::Command::new("sh")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(script).unwrap();
        c.wait_with_output().unwrap().stdout
    }

    #[test]
    fn quoting_keeps_every_byte_but_nul() {
        for word in [
            &b"plain"[..],
            b"it's",
            b"''",
            b"a b\tc\nd",
            b"$(echo x)`echo y`$HOME\\",
            b"-n",
            b"caf\xe9 \xff\xfe",
            b"*?[a]",
            b"",
        ] {
            let mut script = b"printf '%s' ".to_vec();
            script.extend_from_slice(&quote(word));
            assert_eq!(sh(&script), word, "{:?}", String::from_utf8_lossy(word));
        }
    }

    #[test]
    fn probe_finds_the_local_tools() {
        let tools = parse_probe(&sh(&probe_script())).expect("the probe runs through");
        let sha = tools.iter().find(|t| t.algo == Algo::Sha256).unwrap();
        assert_eq!(sha.program, "sha256sum");
        assert!(sha.zero, "coreutils here has -z");
        assert!(tools.iter().any(|t| t.algo == Algo::Md5));
        // Output that is not a shell's: no tools at all.
        assert_eq!(parse_probe(b"\0\0\0\x05\x02garbage"), None);
        // A program that lies about its algorithm is not used.
        let lying = format!("tool sha256sum {}\n{PROBE_DONE}\n", "0".repeat(64));
        assert_eq!(parse_probe(lying.as_bytes()), Some(vec![]));
    }

    #[test]
    fn scripts_hash_the_named_files_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("sftpfs-shell-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        use std::os::unix::ffi::OsStrExt;
        let names: [&[u8]; 6] = [
            b"a b",
            b"it's",
            b"new\nline",
            b"-rf",
            b"$(touch pwned)`touch pwned2`",
            b"caf\xe9",
        ];
        let mut paths = Vec::new();
        for (i, n) in names.iter().enumerate() {
            let p = dir.join(std::ffi::OsStr::from_bytes(n));
            std::fs::write(&p, format!("content {i}")).unwrap();
            paths.push(p.as_os_str().as_bytes().to_vec());
        }
        let missing = dir.join("missing").as_os_str().as_bytes().to_vec();
        paths.push(missing);
        paths.push(dir.as_os_str().as_bytes().to_vec());
        let refs: Vec<&[u8]> = paths.iter().map(|p| p.as_slice()).collect();
        let tools = parse_probe(&sh(&probe_script())).unwrap();
        let sha = tools.iter().find(|t| t.algo == Algo::Sha256).unwrap();
        let want: Vec<Vec<u8>> = (0..names.len())
            .map(|i| Algo::Sha256.digest(format!("content {i}").as_bytes()))
            .collect();

        let got = parse_batch(Algo::Sha256, &sh(&batch_script(sha, &refs)), &refs);
        for i in 0..names.len() {
            assert_eq!(got[i].as_ref(), Some(&want[i]), "batch {i}");
        }
        assert_eq!(got[names.len()], None);
        assert_eq!(got[names.len() + 1], None);

        for how in [PerFile::Tool(sha), PerFile::Template("sha256sum %s")] {
            let got = parse_per_file(Algo::Sha256, &sh(&per_file_script(&how, &refs)), refs.len());
            for i in 0..names.len() {
                assert_eq!(got[i], Answer::Digest(want[i].clone()), "{how:?} {i}");
            }
            assert_eq!(got[names.len()], Answer::Failed(libc::ENOENT));
            assert_eq!(got[names.len() + 1], Answer::Failed(libc::EISDIR));
        }
        assert!(!dir.join("pwned").exists() && !dir.join("pwned2").exists());
        assert!(!std::path::Path::new("pwned").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
