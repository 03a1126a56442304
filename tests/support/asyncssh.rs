//! [`Server::asyncssh`]: AsyncSSH's `SFTPServer` (PyPI `asyncssh`, in the venv that `.ci/run`
//! makes), run by a small script that the test writes into its temp dir, with `home/` as the
//! SFTP server's `chroot`.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use super::servers::{debug_logs, Launch, Prepared, Server};
use super::sshd::keygen;

/// Where `.ci/run` makes the Python venv with AsyncSSH; `SFTPFS_TEST_VENV` overrides it.
pub const DEFAULT_VENV: &str = "/opt/sftpfs-test-venv";

/// The venv's python, or a loud failure that says how to make it.
pub fn venv_python() -> PathBuf {
    let venv = std::env::var_os("SFTPFS_TEST_VENV")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_VENV));
    let python = venv.join("bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import asyncssh"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "no python with asyncssh at {}: run .ci/run, or `python3 -m venv {v} && {v}/bin/pip \
         install asyncssh` (SFTPFS_TEST_VENV names another venv)",
        python.display(),
        v = venv.display()
    );
    python
}

const SCRIPT: &str = r#"# AsyncSSH SFTP server for sftpfs's tests: public key login, SFTP only, chrooted.
import asyncio, logging, sys
import asyncssh

port, host_key, authorized, root, level = sys.argv[1:6]
logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                    format="%(asctime)s %(name)s %(levelname)s %(message)s")
if level == "debug":
    asyncssh.set_log_level(logging.DEBUG)
    asyncssh.set_sftp_log_level(logging.DEBUG)
    asyncssh.set_debug_level(2)
else:
    asyncssh.set_log_level(logging.INFO)
    asyncssh.set_sftp_log_level(logging.INFO)

def sftp_factory(chan):
    return asyncssh.SFTPServer(chan, chroot=root.encode())

class OneTimeCode(asyncssh.SSHServer):
    """Keyboard-interactive only, with a code that works once: as a TOTP server would."""
    used = False
    def connection_made(self, conn):
        print("connection made", file=sys.stderr, flush=True)
    def begin_auth(self, username):
        return True
    def public_key_auth_supported(self):
        return False
    def password_auth_supported(self):
        return False
    def kbdint_auth_supported(self):
        return True
    def get_kbdint_challenge(self, username, lang, submethods):
        return "", "", "", [("Verification code: ", False)]
    def validate_kbdint_response(self, username, responses):
        ok = len(responses) == 1 and responses[0] in codes and responses[0] not in used
        if ok:
            used.add(responses[0])
        print("one-time code", "accepted" if ok else "refused", file=sys.stderr, flush=True)
        return ok

# Comma-separated codes, each good for one login.
code = sys.argv[6] if len(sys.argv) > 6 else None
codes = set(code.split(",")) if code else set()
used = set()

async def main():
    extra = {"server_factory": OneTimeCode} if code else {}
    await asyncssh.listen("127.0.0.1", int(port), server_host_keys=[host_key],
                          authorized_client_keys=authorized, sftp_factory=sftp_factory,
                          allow_scp=False, **extra)
    print("asyncssh", asyncssh.__version__, "listening on port", port, file=sys.stderr,
          flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"#;

impl Server {
    /// AsyncSSH's SFTP server, `home/` as its chroot; any user name (`root` is used).
    pub fn asyncssh() -> Server {
        Self::asyncssh_with(None)
    }

    /// The same, logging in only by keyboard-interactive with one of `codes` (comma-separated),
    /// each of which works once (as one-time passwords do); its log says "one-time code
    /// accepted" or "refused" for each answer.
    pub fn asyncssh_one_time_code(codes: &str) -> Server {
        Self::asyncssh_with(Some(codes.to_string()))
    }

    fn asyncssh_with(code: Option<String>) -> Server {
        let python = venv_python();
        let p = Prepared::new("asyncssh", "root");
        let host_key = p.keys.join("host_ed25519_key");
        let host_key_pub = keygen(&host_key);
        let authorized = p.keys.join("authorized_keys");
        fs::write(&authorized, format!("{}\n", p.client_pub)).unwrap();
        let script = p.keys.join("asyncssh_server.py");
        fs::write(&script, SCRIPT).unwrap();
        let home = p.home.clone();
        let command = move |port: u16| {
            let mut c = Command::new(&python);
            c.arg(&script)
                .arg(port.to_string())
                .arg(&host_key)
                .arg(&authorized)
                .arg(&home)
                .arg(if debug_logs() { "debug" } else { "info" })
                .args(code.iter())
                .env("PYTHONDONTWRITEBYTECODE", "1");
            c
        };
        Server::launch(
            p,
            Launch {
                command: &command,
                host_key_pub,
                root_is_home: false,
                other_logs: Vec::new(),
                before_start: &|_| {},
            },
        )
    }
}
