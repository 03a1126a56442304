//! The process environment the defaults come from (home, user, agent, locale), read once
//! and handed down, so that parsing the command line and ssh_config stays pure.

use std::ffi::OsString;
use std::path::PathBuf;

/// The environment the defaults come from, injected so that parsing is pure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    /// Home directory: `~` in paths, default key and known_hosts files.
    pub home: Option<PathBuf>,
    /// Local user name: the remote user when none is given.
    pub user: Option<String>,
    /// `SSH_AUTH_SOCK`.
    pub ssh_auth_sock: Option<PathBuf>,
    /// The locale of character classification: `LC_ALL`, else `LC_CTYPE`, else `LANG`
    /// (`to_code=`'s default comes from its codeset).
    pub locale: Option<String>,
    /// `XDG_STATE_HOME`: where the journal goes by default (`journal_dir=`).
    pub state_home: Option<PathBuf>,
    /// Running as root: the journal goes to /var/lib/sftpfs by default.
    pub root: bool,
}

impl Env {
    /// `HOME`, `USER` (else `LOGNAME`), `SSH_AUTH_SOCK` and `XDG_STATE_HOME`; the user name and home directory
    /// fall back to the password database entry of the real uid. Empty variables count as unset.
    pub fn from_process() -> Env {
        fn var(name: &str) -> Option<OsString> {
            std::env::var_os(name).filter(|v| !v.is_empty())
        }
        let cell = std::cell::OnceCell::new();
        let passwd = || {
            cell.get_or_init(|| {
                nix::unistd::User::from_uid(nix::unistd::getuid())
                    .ok()
                    .flatten()
            })
            .clone()
        };
        let user = var("USER")
            .or_else(|| var("LOGNAME"))
            .and_then(|u| u.into_string().ok())
            .or_else(|| passwd().map(|p| p.name));
        let home = var("HOME")
            .map(PathBuf::from)
            .or_else(|| passwd().map(|p| p.dir));
        let locale = ["LC_ALL", "LC_CTYPE", "LANG"]
            .iter()
            .find_map(|v| var(v))
            .map(|l| l.to_string_lossy().into_owned());
        Env {
            home,
            user,
            ssh_auth_sock: var("SSH_AUTH_SOCK").map(PathBuf::from),
            locale,
            state_home: var("XDG_STATE_HOME").map(PathBuf::from),
            root: nix::unistd::geteuid().is_root(),
        }
    }
}
