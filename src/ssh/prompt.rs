//! Talking to the user on the controlling terminal (`/dev/tty`, like ssh, so that standard
//! input and output stay free), and reading a password from standard input.
//!
//! Everything here blocks: async callers go through [`blocking`]. Every prompt is timed by a
//! [`PromptClock`], so that connection deadlines do not count the time a person takes to type.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const TTY: &str = "/dev/tty";

/// Whether there is a terminal to ask on.
pub(crate) fn tty_available() -> bool {
    open_tty().is_ok()
}

fn open_tty() -> io::Result<File> {
    OpenOptions::new().read(true).write(true).open(TTY)
}

/// Run a blocking prompt off the async runtime's threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}

/// Total time spent waiting for the user, so deadlines can be pushed back by it.
#[derive(Debug, Default)]
pub(crate) struct PromptClock {
    state: Mutex<ClockState>,
}

#[derive(Debug, Default)]
struct ClockState {
    /// Start of the prompt in progress, if any.
    since: Option<Instant>,
    /// Time of the finished prompts.
    total: Duration,
}

impl PromptClock {
    /// Time spent in prompts so far, including the one in progress.
    pub(crate) fn paused(&self) -> Duration {
        let s = self.lock();
        s.total + s.since.map_or(Duration::ZERO, |t| t.elapsed())
    }

    /// Time `f` as a prompt.
    pub(crate) fn time<T>(&self, f: impl FnOnce() -> T) -> T {
        let _guard = self.start();
        f()
    }

    /// The prompt lasts until the guard is dropped (also when its future is cancelled).
    fn start(&self) -> PromptGuard<'_> {
        self.lock().since = Some(Instant::now());
        PromptGuard(self)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClockState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct PromptGuard<'a>(&'a PromptClock);

impl Drop for PromptGuard<'_> {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        if let Some(t) = s.since.take() {
            s.total += t.elapsed();
        }
    }
}

/// [`blocking`], timed as a prompt.
pub(crate) async fn blocking_timed<T: Send + 'static>(
    clock: &PromptClock,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let _guard = clock.start();
    blocking(f).await
}

/// Who answers the login's questions: the terminal (at mount time), or the terminal of
/// `sftpfs reauth` over the mount's socket (after a lost connection). Blocking.
pub trait Asker: Send + Sync {
    fn tell(&self, text: &str) -> io::Result<()>;
    /// Asks `prompt`; the answer without its newline. `echo`: shown as typed.
    fn ask(&self, prompt: &str, echo: bool) -> io::Result<String>;
}

/// The controlling terminal.
pub struct Tty;

impl Asker for Tty {
    fn tell(&self, text: &str) -> io::Result<()> {
        tell(text)
    }

    fn ask(&self, prompt: &str, echo: bool) -> io::Result<String> {
        if echo {
            ask_visible(prompt)
        } else {
            ask_secret(prompt)
        }
    }
}

/// Write `text` on the terminal.
pub(crate) fn tell(text: &str) -> io::Result<()> {
    let mut tty = open_tty()?;
    tty.write_all(text.as_bytes())?;
    tty.flush()
}

/// Ask a question and read the answer as typed (echoed), without its newline.
pub(crate) fn ask_visible(prompt: &str) -> io::Result<String> {
    let tty = open_tty()?;
    (&tty).write_all(prompt.as_bytes())?;
    (&tty).flush()?;
    let mut line = String::new();
    if BufReader::new(&tty).read_line(&mut line)? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "end of input"));
    }
    Ok(trim_newline(line))
}

/// Ask for a secret without echo.
pub(crate) fn ask_secret(prompt: &str) -> io::Result<String> {
    rpassword::prompt_password(prompt)
}

/// ssh's host key question: `yes`, `no`, or the fingerprint itself (which must match).
pub(crate) fn confirm_host_key(intro: &str, fingerprint: &str) -> io::Result<bool> {
    let mut prompt =
        format!("{intro}Are you sure you want to continue connecting (yes/no/[fingerprint])? ");
    loop {
        let answer = ask_visible(&prompt)?;
        match answer.trim() {
            a if a.eq_ignore_ascii_case("yes") => return Ok(true),
            a if a.eq_ignore_ascii_case("no") => return Ok(false),
            a if a == fingerprint => return Ok(true),
            _ => prompt = "Please type 'yes', 'no' or the fingerprint: ".to_string(),
        }
    }
}

/// One line of standard input, without its line ending (`-o password_stdin`).
pub(crate) fn read_stdin_line() -> io::Result<String> {
    let mut line = String::new();
    if io::stdin().lock().read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "standard input is empty",
        ));
    }
    Ok(trim_newline(line))
}

fn trim_newline(mut line: String) -> String {
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newline_is_stripped_once() {
        assert_eq!(trim_newline("pw\n".into()), "pw");
        assert_eq!(trim_newline("pw\r\n".into()), "pw");
        assert_eq!(trim_newline("pw \n\n".into()), "pw \n");
        assert_eq!(trim_newline("pw".into()), "pw");
    }

    #[test]
    fn clock_counts_prompt_time() {
        let clock = PromptClock::default();
        assert_eq!(clock.paused(), Duration::ZERO);
        clock.time(|| std::thread::sleep(Duration::from_millis(20)));
        assert!(clock.paused() >= Duration::from_millis(20));
    }
}
