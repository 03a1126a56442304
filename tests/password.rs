//! Password and keyboard-interactive logins against a real sshd, for a throwaway local user
//! made for the test (its password in /etc/shadow, where sshd checks it) and removed when the
//! test ends, even when it fails.

mod support;

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use support::*;

const PASSWORD: &str = "correct horse 42";

struct TempUser {
    name: String,
}

impl TempUser {
    fn create(tag: &str) -> TempUser {
        let name = format!("sftpfs-{tag}-{}", std::process::id());
        let st = Command::new("useradd")
            .args(["-M", "-d", "/nonexistent", "-s", "/bin/sh", &name])
            .status()
            .expect("run useradd (package passwd)");
        assert!(st.success(), "useradd {name}: {st}");
        let user = TempUser { name };
        let mut c = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .expect("run chpasswd");
        c.stdin
            .take()
            .unwrap()
            .write_all(format!("{}:{PASSWORD}\n", user.name).as_bytes())
            .unwrap();
        assert!(c.wait().unwrap().success(), "chpasswd");
        user
    }
}

impl Drop for TempUser {
    fn drop(&mut self) {
        // The user's sshd session may still be exiting: -f, and a few tries within a deadline.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while Command::new("userdel")
            .args(["-f", &self.name])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| !s.success())
            && Command::new("getent")
                .args(["passwd", &self.name])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

/// Mounts as the server's user with `password_stdin`, the password file on stdin, no key.
fn mount_with_password<'a>(s: &'a Sshd, password_file: PathBuf) -> Result<Mount<'a>, String> {
    let mnt = s.mountpoint();
    let mut cmd = s.command();
    cmd.arg(s.target(""))
        .arg(&mnt)
        .args(["-p", &s.port.to_string(), "-f", "-o"])
        .arg(format!(
            "UserKnownHostsFile={},StrictHostKeyChecking=yes,password_stdin",
            s.known_hosts.display()
        ))
        .stdin(fs::File::open(password_file).unwrap());
    Mount::spawn_foreground(s, cmd, mnt, s.home())
}

fn password_file(s: &Sshd, text: &str) -> PathBuf {
    let p = s.dir.join(format!("pw-{}", text.len()));
    fs::write(&p, format!("{text}\n")).unwrap();
    p
}

#[test]
fn password_from_stdin_logs_in_and_a_wrong_one_is_refused() {
    let user = TempUser::create("pw");
    let s = Sshd::start_with(&user.name, |c| {
        c.replace("PasswordAuthentication no", "PasswordAuthentication yes")
    });
    fs::write(s.home().join("f"), "via password\n").unwrap();
    let m = mount_with_password(&s, password_file(&s, PASSWORD))
        .unwrap_or_else(|e| panic!("password login failed: {e}"));
    assert_eq!(fs::read_to_string(m.path("f")).unwrap(), "via password\n");
    drop(m);
    let err = mount_with_password(&s, password_file(&s, "wrong password"))
        .err()
        .expect("a wrong password must not mount");
    assert!(err.contains("authentication failed"), "{err}");
    // The secret appears in no message.
    assert!(
        !err.contains("wrong password") && !err.contains(PASSWORD),
        "{err}"
    );
}

#[test]
fn keyboard_interactive_through_pam_gets_the_password() {
    let user = TempUser::create("kbd");
    let s = Sshd::start_with(&user.name, |c| {
        c.replace("UsePAM no", "UsePAM yes").replace(
            "KbdInteractiveAuthentication no",
            "KbdInteractiveAuthentication yes",
        )
    });
    fs::write(s.home().join("f"), "via keyboard-interactive\n").unwrap();
    let m = mount_with_password(&s, password_file(&s, PASSWORD))
        .unwrap_or_else(|e| panic!("keyboard-interactive login failed: {e}"));
    assert_eq!(
        fs::read_to_string(m.path("f")).unwrap(),
        "via keyboard-interactive\n"
    );
}

/// A password typed at mount time is asked once for a pool of four: the built-in client
/// keeps it in memory for the members that connect as the pool grows.
#[test]
fn a_typed_password_is_asked_once_for_the_whole_pool() {
    // One login per member, each with the password kept in memory.
    typed_password_asked_once("tp", "", None);
}

/// `ssh_command=ssh` asks once too: the system ssh of the first pool member becomes a
/// connection master, the others are sessions of it.
#[test]
fn ssh_command_asks_for_the_password_once_for_the_whole_pool() {
    // One login: the other members are sessions of the first one's connection.
    typed_password_asked_once("cm", "ssh_command=ssh,", Some(1));
}

/// Mounts a pool of four on a pseudo-terminal (`script`) where the test types the password
/// when asked, makes the pool grow with parallel reads; checks it was asked once and the
/// server accepted `logins` password logins (`None`: one per session the pool opened).
fn typed_password_asked_once(tag: &str, transport: &str, logins: Option<usize>) {
    let user = TempUser::create(tag);
    let s = Sshd::start_with(&user.name, |c| {
        c.replace("PasswordAuthentication no", "PasswordAuthentication yes")
    });
    fs::write(s.home().join("f"), "via ssh\n").unwrap();
    let files: Vec<Vec<u8>> = (0..3).map(|i| random_bytes(20 << 20, i)).collect();
    for (i, data) in files.iter().enumerate() {
        fs::write(s.home().join(format!("big{i}")), data).unwrap();
    }
    let mnt = s.mountpoint();
    let line = format!(
        "{} {} {} -f -F /dev/null -p {} -o {transport}max_conns=4,UserKnownHostsFile={},StrictHostKeyChecking=yes",
        binary().display(),
        s.target(""),
        mnt.display(),
        s.port,
        s.known_hosts.display()
    );
    let mut tty = OnTty::run(&line, Some(&mnt));
    tty.answer("password:", PASSWORD);
    assert!(
        wait_until(std::time::Duration::from_secs(20), || is_mounted(&mnt)),
        "not mounted; it said:\n{}",
        tty.said()
    );
    assert_eq!(fs::read_to_string(mnt.join("f")).unwrap(), "via ssh\n");
    // Parallel reads of long files: the pool grows, without asking again.
    std::thread::scope(|sc| {
        for (i, data) in files.iter().enumerate() {
            let path = mnt.join(format!("big{i}"));
            sc.spawn(move || assert!(fs::read(&path).unwrap() == *data, "big{i} differs"));
        }
    });
    let up = members_up(&mnt);
    assert!(up >= 2, "{up} of 4 members up after parallel reads");
    let said = tty.said().to_string();
    assert_eq!(said.matches("password:").count(), 1, "asked again:\n{said}");
    let log = fs::read_to_string(&s.log).unwrap_or_default();
    let opened = status_json(&mnt)["pool"]["sessions_opened"]
        .as_u64()
        .unwrap() as usize;
    let logins = logins.unwrap_or(opened);
    assert_eq!(log.matches("Accepted password").count(), logins, "{log}");
}
