//! The command's side: `sftpfs status [--json | --prometheus] [--watch] [MOUNTPOINT]`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::{render, socket};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Prometheus,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub mountpoint: Option<std::path::PathBuf>,
    pub format: Format,
    pub watch: bool,
}

/// Prints the status (every second with `--watch`, until interrupted). The error is one line.
pub fn run(req: &Request) -> Result<(), String> {
    loop {
        let out = once(req)?;
        let mut stdout = std::io::stdout().lock();
        if req.watch && req.format == Format::Text {
            // Home and clear: the screen is redrawn in place.
            let _ = write!(stdout, "\x1b[H\x1b[2J");
        }
        let _ = write!(stdout, "{out}");
        let _ = stdout.flush();
        if !req.watch {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn once(req: &Request) -> Result<String, String> {
    let docs = match &req.mountpoint {
        Some(m) => vec![ask(m)?],
        None => all_mounts(),
    };
    Ok(match req.format {
        Format::Json if req.mountpoint.is_some() => format!("{}\n", docs[0]),
        Format::Json => format!("{}\n", Value::Array(docs)),
        Format::Prometheus => render::prometheus(&docs),
        Format::Text if req.mountpoint.is_some() => render::text(&docs[0]),
        Format::Text if docs.is_empty() => "no sftpfs mounts of yours\n".to_string(),
        Format::Text => docs.iter().map(|d| render::summary(d) + "\n").collect(),
    })
}

/// The status of the mount at `mountpoint`.
pub fn ask(mountpoint: &Path) -> Result<Value, String> {
    let canon =
        std::fs::canonicalize(mountpoint).map_err(|e| format!("{}: {e}", mountpoint.display()))?;
    let sock = socket::path_for(&canon);
    request(&sock, "status").map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => format!(
            "{} is not an sftpfs mount of yours (no answer on {}); `sftpfs status` lists them",
            canon.display(),
            sock.display()
        ),
        _ => format!("{}: cannot ask its daemon: {e}", canon.display()),
    })
}

/// Every mount of this user whose daemon answers, by mount point. Sockets nobody answers on
/// (a daemon that was killed) are removed.
fn all_mounts() -> Vec<Value> {
    let Ok(dir) = std::fs::read_dir(socket::dir()) else {
        return Vec::new();
    };
    let mut docs: Vec<Value> = dir
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "sock"))
        .filter_map(|e| match request(&e.path(), "status") {
            Ok(v) => Some(v),
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => {
                let _ = std::fs::remove_file(e.path());
                None
            }
            Err(_) => None,
        })
        .collect();
    docs.sort_by(|a, b| a["mountpoint"].as_str().cmp(&b["mountpoint"].as_str()));
    docs
}

/// One request on a mount's socket; its answer, parsed.
pub fn request(sock: &Path, what: &str) -> std::io::Result<Value> {
    request_within(sock, what, Some(Duration::from_secs(10)))
}

/// `request`, waiting at most `answer_within` for the answer (`None`: as long as it takes).
fn request_within(
    sock: &Path,
    what: &str,
    answer_within: Option<Duration>,
) -> std::io::Result<Value> {
    let mut s = UnixStream::connect(sock)?;
    s.set_read_timeout(answer_within)?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(format!("{what}\n").as_bytes())?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    if answer.trim().is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "the daemon did not answer (only the user who mounted and root may ask)",
        ));
    }
    let v: Value = serde_json::from_str(&answer)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    if let Some(e) = v["error"].as_str() {
        return Err(std::io::Error::other(e.to_string()));
    }
    Ok(v)
}

/// `sftpfs refresh MOUNTPOINT [PATH]`: the mount (and the kernel) forget what they cached at
/// or below PATH (relative to the mount, or absolute inside it; all of it without PATH).
pub fn refresh(mountpoint: &Path, path: Option<&Path>) -> Result<(), String> {
    let canon =
        std::fs::canonicalize(mountpoint).map_err(|e| format!("{}: {e}", mountpoint.display()))?;
    let rel = match path {
        Some(p) => below(&canon, p)?,
        None => Vec::new(),
    };
    let sock = socket::path_for(&canon);
    let what = format!("refresh {}", super::server::hex(&rel));
    request(&sock, &what).map(drop).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => format!(
            "{} is not an sftpfs mount of yours (no answer on {}); `sftpfs status` lists them",
            canon.display(),
            sock.display()
        ),
        _ => format!("{}: cannot ask its daemon: {e}", canon.display()),
    })
}

/// `sftpfs sync MOUNTPOINT`: returns once everything the mount queued (`async_writes`) is
/// on the server; an error names each queued operation that failed and was not reported yet.
pub fn sync(mountpoint: &Path) -> Result<(), String> {
    let canon =
        std::fs::canonicalize(mountpoint).map_err(|e| format!("{}: {e}", mountpoint.display()))?;
    let sock = socket::path_for(&canon);
    let v = request_within(&sock, "sync", None).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => format!(
            "{} is not an sftpfs mount of yours (no answer on {}); `sftpfs status` lists them",
            canon.display(),
            sock.display()
        ),
        _ => format!("{}: cannot ask its daemon: {e}", canon.display()),
    })?;
    let all = v["failed"].as_array().cloned().unwrap_or_default();
    let (conflicts, failures): (Vec<_>, Vec<_>) = all
        .iter()
        .partition(|f| f["op"].as_str() == Some("conflict"));
    let failed: Vec<String> = failures
        .iter()
        .map(|f| {
            format!(
                "{} of {}: {}",
                f["op"].as_str().unwrap_or("?"),
                f["path"].as_str().unwrap_or("?"),
                f["errno"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let conflicted: Vec<String> = conflicts
        .iter()
        .map(|f| {
            let path = f["path"].as_str().unwrap_or("?");
            match f["kept_as"].as_str() {
                Some(k) => format!("{path} (this mount's version is {k})"),
                None => format!("{path} (left as the server has it)"),
            }
        })
        .collect();
    let mut said = Vec::new();
    if !failed.is_empty() {
        said.push(format!(
            "{} queued operation(s) failed on the server (the log has each): {}",
            failed.len(),
            failed.join("; ")
        ));
    }
    if !conflicted.is_empty() {
        said.push(format!(
            "{} conflict(s), changed on the server while this mount's change waited; both \
             versions kept: {}",
            conflicted.len(),
            conflicted.join("; ")
        ));
    }
    if said.is_empty() {
        return Ok(());
    }
    Err(format!("{}: {}", canon.display(), said.join("; ")))
}

/// `sftpfs reauth MOUNTPOINT`: the mount's daemon logs in again, asking its questions here,
/// on this terminal.
pub fn reauth(mountpoint: &Path) -> Result<(), String> {
    use std::io::BufRead;
    let canon =
        std::fs::canonicalize(mountpoint).map_err(|e| format!("{}: {e}", mountpoint.display()))?;
    let sock = socket::path_for(&canon);
    let mut s = UnixStream::connect(&sock).map_err(|e| {
        format!(
            "{} is not an sftpfs mount of yours (no answer on {}: {e}); `sftpfs status` lists them",
            canon.display(),
            sock.display()
        )
    })?;
    s.write_all(b"reauth\n").map_err(|e| e.to_string())?;
    let mut rd = std::io::BufReader::new(s.try_clone().map_err(|e| e.to_string())?);
    loop {
        let mut line = String::new();
        if rd.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err(format!(
                "{}: the daemon did not answer (only the user who mounted and root may ask)",
                canon.display()
            ));
        }
        let v: Value = serde_json::from_str(&line).map_err(|e| e.to_string())?;
        if let Some(t) = v["tell"].as_str() {
            eprint!("{t}");
        } else if let Some(p) = v["ask"].as_str() {
            let answer = if v["echo"] == true {
                ask_visible(p)
            } else {
                rpassword::prompt_password(p)
            }
            .map_err(|e| format!("cannot ask on the terminal: {e}"))?;
            let reply = serde_json::json!({ "answer": answer });
            s.write_all(format!("{reply}\n").as_bytes())
                .map_err(|e| e.to_string())?;
        } else if v["ok"] == true {
            return Ok(());
        } else {
            return Err(format!(
                "{}: {}",
                canon.display(),
                v["error"].as_str().unwrap_or("the login failed")
            ));
        }
    }
}

/// A question answered as typed, on the terminal.
fn ask_visible(prompt: &str) -> std::io::Result<String> {
    use std::io::BufRead;
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")?;
    (&tty).write_all(prompt.as_bytes())?;
    let mut line = String::new();
    std::io::BufReader::new(&tty).read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// `p` as a path below the mount root, without resolving anything inside the mount (a name
/// may be gone from the server).
fn below(mountpoint: &Path, p: &Path) -> Result<Vec<u8>, String> {
    use std::path::Component;
    let rel = if p.is_absolute() {
        p.strip_prefix(mountpoint).map_err(|_| {
            format!(
                "{} is not inside the mount {}",
                p.display(),
                mountpoint.display()
            )
        })?
    } else {
        p
    };
    let mut out: Vec<u8> = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(n.as_encoded_bytes());
            }
            Component::CurDir => {}
            _ => {
                return Err(format!(
                    "{}: give a path inside the mount, without '..'",
                    p.display()
                ))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_paths_are_taken_below_the_mount() {
        let m = Path::new("/mnt/x");
        assert_eq!(below(m, Path::new("/mnt/x/a/b/")).unwrap(), b"a/b");
        assert_eq!(below(m, Path::new("/mnt/x")).unwrap(), b"");
        assert_eq!(below(m, Path::new("./a//b")).unwrap(), b"a/b");
        assert!(below(m, Path::new("/mnt/y/a"))
            .unwrap_err()
            .contains("not inside"));
        assert!(below(m, Path::new("a/../b")).unwrap_err().contains(".."));
    }
}
