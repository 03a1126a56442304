//! Looking a host up: `ssh -G` when `ssh` is installed, the built-in parser otherwise.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::parse::parse_for_host;
use super::{check_name, HostSettings};
use crate::env::Env;

/// `ssh -G` runs `Match exec` commands; it must not hold up the mount forever.
const SSH_G_TIMEOUT: Duration = Duration::from_secs(30);

/// Answers "what does ssh_config say about this host": `ssh -G` when `ssh` is installed, the
/// built-in parser otherwise.
pub struct Lookup {
    config_file: Option<PathBuf>,
    pub(super) env: Env,
    /// Set once `ssh` turned out not to be installed.
    no_ssh: std::cell::Cell<bool>,
}

impl Lookup {
    pub fn new(config_file: Option<PathBuf>, env: Env) -> Lookup {
        Lookup {
            config_file,
            env,
            no_ssh: std::cell::Cell::new(false),
        }
    }

    /// The settings ssh_config gives `host` (with `-p`/`-l` when the command line set them,
    /// since `Match` and tokens may depend on them).
    pub fn host(
        &self,
        host: &str,
        port: Option<u16>,
        user: Option<&str>,
    ) -> Result<HostSettings, String> {
        check_name(host).map_err(|why| format!("invalid host '{host}': {why}"))?;
        if !self.no_ssh.get() {
            match self.ssh_g(host, port, user) {
                Ok(s) => return Ok(s),
                Err(SshG::Missing) => {
                    tracing::debug!(
                        "ssh is not installed: reading ssh_config with sftpfs's parser"
                    );
                    self.no_ssh.set(true);
                }
                Err(SshG::Failed(e)) => return Err(e),
            }
        }
        // As ssh: a missing -F file is an error (a missing ~/.ssh/config is not).
        if let Some(f) = self
            .config_file
            .as_ref()
            .filter(|f| f.as_os_str() != "none")
        {
            std::fs::metadata(f)
                .map_err(|e| format!("cannot read ssh config file {}: {e}", f.display()))?;
        }
        Ok(parse_for_host(
            &self.files(),
            host,
            self.env.home.as_deref(),
        ))
    }

    /// The files the built-in parser reads: `-F FILE` alone (none for `-F none`), else the
    /// user's and the system's.
    fn files(&self) -> Vec<PathBuf> {
        match &self.config_file {
            Some(f) if f.as_os_str() == "none" => Vec::new(),
            Some(f) => vec![f.clone()],
            None => {
                let mut v: Vec<PathBuf> = self
                    .env
                    .home
                    .iter()
                    .map(|h| h.join(".ssh/config"))
                    .collect();
                v.push(PathBuf::from("/etc/ssh/ssh_config"));
                v
            }
        }
    }

    /// `ssh -G` with the config, minus what `ssh -G -F none` prints (the built-in defaults).
    fn ssh_g(
        &self,
        host: &str,
        port: Option<u16>,
        user: Option<&str>,
    ) -> Result<HostSettings, SshG> {
        let config: Option<OsString> = self.config_file.clone().map(PathBuf::into_os_string);
        let with = run_ssh_g(config, host, port, user)?;
        let without = run_ssh_g(Some("none".into()), host, port, user)?;
        let mut s = HostSettings::default();
        for (key, values) in with {
            if without.get(&key) != Some(&values) {
                s.values.insert(key, values);
            }
        }
        Ok(s)
    }
}

enum SshG {
    /// `ssh` is not installed.
    Missing,
    /// It ran and said no (a bad config file); one line.
    Failed(String),
}

fn run_ssh_g(
    config: Option<OsString>,
    host: &str,
    port: Option<u16>,
    user: Option<&str>,
) -> Result<BTreeMap<String, Vec<String>>, SshG> {
    let mut cmd = Command::new("ssh");
    cmd.arg("-G");
    if let Some(f) = config {
        cmd.arg("-F").arg(f);
    }
    if let Some(p) = port {
        cmd.arg("-p").arg(p.to_string());
    }
    if let Some(u) = user {
        cmd.arg("-l").arg(u);
    }
    cmd.arg("--").arg(host);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(SshG::Missing),
        Err(e) => return Err(SshG::Failed(format!("cannot run ssh -G: {e}"))),
    };
    // Read both pipes off this thread so a chatty ssh cannot block on a full pipe.
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut v);
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr, &mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if start.elapsed() < SSH_G_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(SshG::Failed(format!(
                    "ssh -G {host} did not finish within {}s (a Match exec in ssh_config?)",
                    SSH_G_TIMEOUT.as_secs()
                )));
            }
        }
    };
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    if !status.success() {
        let err = String::from_utf8_lossy(&err);
        let line = err
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("Pseudo-terminal will not be allocated"))
            .unwrap_or("no message");
        return Err(SshG::Failed(format!(
            "ssh_config: ssh -G {host} failed: {line}"
        )));
    }
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out).lines() {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        if key.is_empty() {
            continue;
        }
        map.entry(key.to_ascii_lowercase())
            .or_default()
            .push(value.to_string());
    }
    Ok(map)
}
