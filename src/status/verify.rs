//! `sftpfs verify [--against LOCAL] [--json] PATH...`: for each regular file at or below the
//! PATHs (inside sftpfs mounts), the hash the server computes now, compared with the hash of
//! the local copy under LOCAL (hashed here, in parallel), or without LOCAL with the hash of
//! what the mount last wrote whole to the file (`verify_writes`), when it knows one. The
//! daemon walks the server's tree and asks for many hashes at once
//! (`status/verify_server.rs`); nothing is read back over the link.
//!
//! Per file: `OK`, `MISMATCH`, `MISSING` (on one side only, with LOCAL), `UNKNOWN` (nothing
//! to compare with) or `ERROR`. Exit status 0 when every file matched, 1 when one differs
//! or is missing, 2 when none differs but some could not be compared (or on trouble).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::server::{hex, unhex};
use super::socket;
use crate::remote::hash::{self, Algo};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyRequest {
    pub paths: Vec<PathBuf>,
    pub against: Option<PathBuf>,
    pub json: bool,
}

/// One file's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    Ok,
    Mismatch,
    Missing,
    Unknown,
    Error,
}

impl Verdict {
    fn word(self) -> &'static str {
        match self {
            Verdict::Ok => "OK",
            Verdict::Mismatch => "MISMATCH",
            Verdict::Missing => "MISSING",
            Verdict::Unknown => "UNKNOWN",
            Verdict::Error => "ERROR",
        }
    }
}

struct Line {
    shown: String,
    verdict: Verdict,
    size: Option<u64>,
    server: Option<Vec<u8>>,
    local: Option<Vec<u8>>,
    note: String,
}

/// A PATH inside a mount: the mount point (canonical), the path below its root, and the
/// PATH as given (for the output).
struct Root {
    mount: PathBuf,
    rel: Vec<u8>,
    given: PathBuf,
    /// With `--against`: the local counterpart.
    local: Option<PathBuf>,
}

/// Runs the command; the exit status, or the one-line error (exit status 2).
pub fn run(req: &VerifyRequest) -> Result<u8, String> {
    let mut roots = Vec::new();
    for p in &req.paths {
        roots.push(locate(p)?);
    }
    if let Some(l) = &req.against {
        if !l.exists() {
            return Err(format!(
                "--against {}: no such file or directory",
                l.display()
            ));
        }
        let one = roots.len() == 1;
        for r in &mut roots {
            let base = r.given.file_name().map(PathBuf::from).unwrap_or_default();
            r.local = Some(if one && (r.given.is_dir() || !l.is_dir()) {
                l.clone()
            } else {
                l.join(base)
            });
        }
    }
    let progress = !req.json && std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut lines = Vec::new();
    let mut algo = None;
    // One request per mount.
    let mut mounts: Vec<PathBuf> = roots.iter().map(|r| r.mount.clone()).collect();
    mounts.dedup();
    for mount in mounts {
        let these: Vec<&Root> = roots.iter().filter(|r| r.mount == mount).collect();
        let (a, mut l) = verify_mount(&mount, &these, progress)?;
        algo = Some(a);
        lines.append(&mut l);
    }
    if progress {
        eprint!("\r\x1b[K");
    }
    lines.sort_by(|a, b| a.shown.cmp(&b.shown));
    let count = |v: Verdict| lines.iter().filter(|l| l.verdict == v).count();
    let summary = json!({
        "ok": count(Verdict::Ok),
        "mismatch": count(Verdict::Mismatch),
        "missing": count(Verdict::Missing),
        "unknown": count(Verdict::Unknown),
        "error": count(Verdict::Error),
    });
    let mut out = std::io::stdout().lock();
    if req.json {
        let files: Vec<Value> = lines
            .iter()
            .map(|l| {
                json!({
                    "path": l.shown,
                    "result": l.verdict.word(),
                    "size": l.size,
                    "server": l.server.as_deref().map(hash::hex),
                    "local": l.local.as_deref().map(hash::hex),
                    "note": (l.verdict != Verdict::Ok).then_some(&l.note),
                })
            })
            .collect();
        let doc = json!({
            "algorithm": algo.map(|a| a.name()),
            "files": files,
            "summary": summary,
        });
        let _ = writeln!(out, "{doc}");
    } else {
        for l in &lines {
            let _ = writeln!(
                out,
                "{:<8} {}{}",
                l.verdict.word(),
                l.shown,
                details(l, algo)
            );
        }
        eprintln!(
            "sftpfs verify: {} files in {:.1} s: {} OK, {} MISMATCH, {} MISSING, {} UNKNOWN, {} ERROR",
            lines.len(),
            started.elapsed().as_secs_f64(),
            count(Verdict::Ok),
            count(Verdict::Mismatch),
            count(Verdict::Missing),
            count(Verdict::Unknown),
            count(Verdict::Error),
        );
    }
    let _ = out.flush();
    Ok(if count(Verdict::Mismatch) + count(Verdict::Missing) > 0 {
        1
    } else if count(Verdict::Unknown) + count(Verdict::Error) > 0 {
        2
    } else {
        0
    })
}

fn details(l: &Line, algo: Option<Algo>) -> String {
    let a = algo.map_or("", |a| a.name());
    let hexed = |d: &Option<Vec<u8>>| d.as_deref().map(hash::hex).unwrap_or_default();
    match l.verdict {
        Verdict::Ok => String::new(),
        // `note` says what the server's digest was compared with.
        Verdict::Mismatch => format!(
            "  ({a}: server {}, {} {})",
            hexed(&l.server),
            l.note,
            hexed(&l.local)
        ),
        _ => format!("  ({})", l.note),
    }
}

/// Asks the daemon of `mount` for the files at or below `roots`, hashes their local copies
/// meanwhile, and compares.
fn verify_mount(
    mount: &Path,
    roots: &[&Root],
    progress: bool,
) -> Result<(Algo, Vec<Line>), String> {
    let sock = socket::path_for(mount);
    let not_ours = |e: std::io::Error| {
        format!(
            "{}: cannot ask its daemon ({e}); is it an sftpfs mount of yours? `sftpfs status` lists them",
            mount.display()
        )
    };
    let mut s = UnixStream::connect(&sock).map_err(not_ours)?;
    s.set_write_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut request = b"verify\n".to_vec();
    for r in roots {
        request.extend_from_slice(hex(&r.rel).as_bytes());
        request.push(b'\n');
    }
    request.push(b'\n');
    s.write_all(&request).map_err(not_ours)?;
    let mut rd = BufReader::new(s);
    let first = read_line(&mut rd)?.ok_or_else(|| {
        format!(
            "{}: the daemon did not answer (only the user who mounted and root may ask)",
            mount.display()
        )
    })?;
    if let Some(e) = first["error"].as_str() {
        return Err(format!("{}: {e}", mount.display()));
    }
    let algo = first["algorithm"]
        .as_str()
        .and_then(|a| Algo::from_name(a.as_bytes()))
        .ok_or_else(|| format!("{}: the daemon named no algorithm", mount.display()))?;
    // The local copies are hashed meanwhile, several at a time.
    let local = roots
        .iter()
        .any(|r| r.local.is_some())
        .then(|| LocalHashes::start(roots, algo));
    let mut from_server: Vec<(usize, Vec<u8>, Value)> = Vec::new();
    let mut last_shown = Instant::now();
    loop {
        let Some(v) = read_line(&mut rd)? else {
            return Err(format!(
                "{}: the daemon stopped answering before the end",
                mount.display()
            ));
        };
        if v["done"] == true {
            break;
        }
        let Some(path) = v["path"].as_str().and_then(unhex) else {
            continue;
        };
        // The deepest root it is under (a root is itself, or a directory above it).
        let Some(i) = (0..roots.len())
            .filter(|&i| below(&roots[i].rel, &path).is_some())
            .max_by_key(|&i| roots[i].rel.len())
        else {
            continue;
        };
        from_server.push((i, path, v));
        if progress && last_shown.elapsed() > Duration::from_millis(200) {
            last_shown = Instant::now();
            let here = local.as_ref().map_or(0, |l| l.done());
            eprint!(
                "\r\x1b[Kverify: {} files hashed on the server, {here} here",
                from_server.len()
            );
        }
    }
    let mut local = local.map(|l| l.finish()).unwrap_or_default();
    let mut lines = Vec::new();
    for (i, path, v) in from_server {
        let r = roots[i];
        let sub = below(&r.rel, &path).unwrap_or_default();
        let shown = shown_path(&r.given, &sub);
        let size = v["size"].as_u64();
        let server = v["digest"]
            .as_str()
            .and_then(|d| hash::algo::unhex(algo, d.as_bytes()));
        let mut line = Line {
            shown,
            verdict: Verdict::Unknown,
            size,
            server: server.clone(),
            local: None,
            note: String::new(),
        };
        if server.is_none() {
            line.verdict = Verdict::Error;
            line.note = format!(
                "{}: {}",
                v["errno"].as_str().unwrap_or("?"),
                v["error"].as_str().unwrap_or("no digest")
            );
            local.remove(&(i, sub));
            lines.push(line);
            continue;
        }
        if r.local.is_some() {
            match local.remove(&(i, sub.clone())) {
                Some(Ok(d)) => {
                    line.verdict = if Some(&d) == server.as_ref() {
                        Verdict::Ok
                    } else {
                        Verdict::Mismatch
                    };
                    line.local = Some(d);
                    line.note = "local copy".into();
                }
                Some(Err(e)) => {
                    line.verdict = Verdict::Error;
                    line.note = format!("local copy: {e}");
                }
                None => {
                    line.verdict = Verdict::Missing;
                    line.note = "only on the server".into();
                }
            }
        } else if let Some(sent) = v["sent"].as_str() {
            let sent = hash::algo::unhex(algo, sent.as_bytes());
            line.verdict = if sent == server {
                Verdict::Ok
            } else {
                Verdict::Mismatch
            };
            line.local = sent;
            line.note = "what this mount wrote".into();
        } else {
            line.note = format!(
                "server {algo} {}; nothing to compare with: give --against LOCAL",
                hash::hex(server.as_deref().unwrap_or_default())
            );
        }
        lines.push(line);
    }
    // Local files the server does not have.
    for ((i, sub), _) in local {
        lines.push(Line {
            shown: shown_path(&roots[i].given, &sub),
            verdict: Verdict::Missing,
            size: None,
            server: None,
            local: None,
            note: "only in the local copy".into(),
        });
    }
    Ok((algo, lines))
}

fn read_line(rd: &mut BufReader<UnixStream>) -> Result<Option<Value>, String> {
    let mut line = String::new();
    match rd.read_line(&mut line) {
        Ok(0) => Ok(None),
        Ok(_) => serde_json::from_str(&line)
            .map(Some)
            .map_err(|e| format!("bad answer from the daemon: {e}")),
        Err(e) => Err(format!("reading the daemon's answer: {e}")),
    }
}

/// `path` below `root` (both below the mount root): what follows `root/`, or empty when it
/// is `root` itself.
fn below(root: &[u8], path: &[u8]) -> Option<Vec<u8>> {
    if root.is_empty() {
        return Some(path.to_vec());
    }
    if path == root {
        return Some(Vec::new());
    }
    path.strip_prefix(root)?
        .strip_prefix(b"/")
        .map(<[u8]>::to_vec)
}

/// The PATH as given, and the part below it; control characters and bytes that are not
/// UTF-8 escaped (a name cannot break a line of the output).
fn shown_path(given: &Path, sub: &[u8]) -> String {
    let mut b = given.as_os_str().as_bytes().to_vec();
    if !sub.is_empty() {
        if !b.ends_with(b"/") {
            b.push(b'/');
        }
        b.extend_from_slice(sub);
    }
    escape(&b)
}

fn escape(b: &[u8]) -> String {
    let mut s = String::new();
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => s.push_str("\\\\"),
                c if c.is_control() => s.extend(c.escape_default()),
                c => s.push(c),
            }
        }
        for x in chunk.invalid() {
            s.push_str(&format!("\\x{x:02x}"));
        }
    }
    s
}

/// Which mount `p` is in, and where below its root: the deepest of its directories (taken
/// as written, `..` resolved by name) whose canonical path has a socket of this user's.
fn locate(p: &Path) -> Result<Root, String> {
    let cwd = std::env::current_dir().map_err(|e| e.to_string())?;
    let mut abs = PathBuf::from("/");
    for c in cwd.join(p).components() {
        match c {
            Component::ParentDir => {
                abs.pop();
            }
            Component::Normal(n) => abs.push(n),
            _ => {}
        }
    }
    for anc in abs.ancestors() {
        let Ok(canon) = std::fs::canonicalize(anc) else {
            continue;
        };
        if !socket::path_for(&canon).exists()
            || !crate::connect::is_mount_point(canon.as_os_str().as_bytes())
        {
            continue;
        }
        let rest = abs.strip_prefix(anc).unwrap_or(Path::new(""));
        let rel = rest.as_os_str().as_bytes().to_vec();
        return Ok(Root {
            mount: canon,
            rel,
            given: p.to_path_buf(),
            local: None,
        });
    }
    Err(format!(
        "{}: not inside an sftpfs mount of yours (`sftpfs status` lists them)",
        p.display()
    ))
}

/// The local copies' digests, computed by a few threads while the server answers; keyed by
/// (root, path below the root).
struct LocalHashes {
    done: Arc<Mutex<Digests>>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

type Digests = HashMap<(usize, Vec<u8>), Result<Vec<u8>, String>>;

impl LocalHashes {
    fn start(roots: &[&Root], algo: Algo) -> LocalHashes {
        let mut files = Vec::new();
        for (i, r) in roots.iter().enumerate() {
            if let Some(l) = &r.local {
                walk_local(l, Vec::new(), i, &mut files);
            }
        }
        let queue = Arc::new(Mutex::new(files));
        let done = Arc::new(Mutex::new(HashMap::new()));
        let n = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .min(8);
        let workers = (0..n)
            .map(|_| {
                let (queue, done) = (queue.clone(), done.clone());
                std::thread::spawn(move || loop {
                    let Some((key, path)) = queue.lock().unwrap().pop() else {
                        return;
                    };
                    let d = hash_file(&path, algo);
                    done.lock().unwrap().insert(key, d);
                })
            })
            .collect();
        LocalHashes { done, workers }
    }

    fn done(&self) -> usize {
        self.done.lock().unwrap().len()
    }

    fn finish(self) -> BTreeMap<(usize, Vec<u8>), Result<Vec<u8>, String>> {
        for w in self.workers {
            let _ = w.join();
        }
        let d = std::mem::take(&mut *self.done.lock().unwrap());
        d.into_iter().collect()
    }
}

/// The regular files at or below `path` (itself when it is one), by their path below the
/// root they belong to.
fn walk_local(path: &Path, sub: Vec<u8>, root: usize, out: &mut Vec<((usize, Vec<u8>), PathBuf)>) {
    let Ok(m) = std::fs::symlink_metadata(path) else {
        return;
    };
    if m.is_file() {
        out.push(((root, sub), path.to_path_buf()));
    } else if m.is_dir() {
        let Ok(rd) = std::fs::read_dir(path) else {
            return;
        };
        for e in rd.flatten() {
            let mut s = sub.clone();
            if !s.is_empty() {
                s.push(b'/');
            }
            s.extend_from_slice(e.file_name().as_bytes());
            walk_local(&e.path(), s, root, out);
        }
    }
}

fn hash_file(path: &Path, algo: Algo) -> Result<Vec<u8>, String> {
    let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut h = algo.hasher();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(h.finish());
        }
        h.update(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_below_roots_and_as_shown() {
        assert_eq!(below(b"", b"a/b"), Some(b"a/b".to_vec()));
        assert_eq!(below(b"a", b"a/b"), Some(b"b".to_vec()));
        assert_eq!(below(b"a", b"a"), Some(vec![]));
        assert_eq!(below(b"a", b"ab/c"), None);
        assert_eq!(shown_path(Path::new("m/d"), b"x"), "m/d/x");
        assert_eq!(shown_path(Path::new("m/f"), b""), "m/f");
        assert_eq!(escape(b"new\nline caf\xe9\\"), "new\\nline caf\\xe9\\\\");
    }
}
