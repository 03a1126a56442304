//! Where log lines go. In the foreground: `tracing` events to stderr (`-d` for debug). In the
//! background: the same to stderr while the process still has the terminal (before it detaches,
//! stderr becomes /dev/null after that), and warnings and errors to syslog as well (facility
//! `daemon`, identifier `sftpfs`), where journald picks them up: the failure of an automount
//! can be read with `journalctl -t sftpfs`.
//!
//! Only an event's own message and fields are sent, never the fields of the spans around it;
//! nothing in sftpfs logs a password, a passphrase or key material.

use std::ffi::CString;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// fuser's only warning there is its own unmount of a mount already gone (`umount` or
/// `fusermount3 -u` ended it; after a signal, `mount.rs` unmounted and reports failures).
const QUIET: &str = "fuser::session=error";

/// Set once syslog has been opened (background mode).
static SYSLOG: AtomicBool = AtomicBool::new(false);

/// Sets up logging once, after the fork. `filter` is `SFTPFS_LOG` (an `EnvFilter` directive,
/// for stderr only) when set.
pub fn init(debug: bool, background: bool, filter: Option<String>) {
    let level = if debug { "debug" } else { "warn" };
    let stderr_filter = filter
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(format!("sftpfs={level},{QUIET},warn")));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(stderr_filter);
    let syslog = background.then(|| {
        open_syslog();
        let quiet = Targets::new()
            .with_default(LevelFilter::WARN)
            .with_target(QUIET.split('=').next().unwrap(), LevelFilter::ERROR);
        SyslogLayer { sink: LibcSyslog }.with_filter(quiet)
    });
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(syslog)
        .try_init();
}

/// The error that ends the process: `sftpfs: <msg>` on stderr, and to syslog when it is open
/// (a background mount whose parent has already exited has no other place to say it).
pub fn fatal(msg: &str) {
    eprintln!("sftpfs: {msg}");
    if SYSLOG.load(Ordering::SeqCst) {
        LibcSyslog.send(libc::LOG_ERR, msg);
    }
}

/// A log line that a server can make happen again and again (a listing refused, names
/// dropped): said at most once per [`Rarely::EVERY`], with the count of the times it was not.
pub struct Rarely {
    last: std::sync::Mutex<Option<(std::time::Instant, u64)>>,
}

impl Rarely {
    pub const EVERY: std::time::Duration = std::time::Duration::from_secs(300);

    pub const fn new() -> Rarely {
        Rarely {
            last: std::sync::Mutex::new(None),
        }
    }

    /// `Some(n)` when the line is to be said now, `n` the times it was held back since it
    /// was last said; `None` to hold it back.
    pub fn due(&self) -> Option<u64> {
        let mut last = self.last.lock().unwrap();
        match &mut *last {
            Some((at, held)) if at.elapsed() < Self::EVERY => {
                *held += 1;
                None
            }
            other => {
                let held = other.map_or(0, |(_, n)| n);
                *other = Some((std::time::Instant::now(), 0));
                Some(held)
            }
        }
    }
}

impl Default for Rarely {
    fn default() -> Self {
        Rarely::new()
    }
}

fn open_syslog() {
    // SAFETY: the identifier is a 'static C string, as openlog keeps the pointer.
    unsafe { libc::openlog(c"sftpfs".as_ptr(), libc::LOG_PID, libc::LOG_DAEMON) };
    SYSLOG.store(true, Ordering::SeqCst);
}

/// Where syslog lines go; a trait so that tests can catch them.
trait Sink: Send + Sync + 'static {
    fn send(&self, priority: libc::c_int, line: &str);
}

struct LibcSyslog;

impl Sink for LibcSyslog {
    fn send(&self, priority: libc::c_int, line: &str) {
        let Ok(line) = CString::new(line) else { return };
        // SAFETY: a constant format with one %s and a NUL-terminated argument.
        unsafe { libc::syslog(libc::LOG_DAEMON | priority, c"%s".as_ptr(), line.as_ptr()) };
    }
}

/// A `tracing` layer that sends each event as one syslog line.
struct SyslogLayer<S> {
    sink: S,
}

fn priority(level: &Level) -> libc::c_int {
    match *level {
        Level::ERROR => libc::LOG_ERR,
        Level::WARN => libc::LOG_WARNING,
        Level::INFO => libc::LOG_INFO,
        _ => libc::LOG_DEBUG,
    }
}

impl<S: Sink, C: Subscriber> Layer<C> for SyslogLayer<S> {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, C>) {
        let mut line = Line::default();
        event.record(&mut line);
        let text: String = line
            .0
            .trim()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        self.sink.send(priority(event.metadata().level()), &text);
    }
}

/// The message, then ` name=value` for the other fields.
#[derive(Default)]
struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let fields = std::mem::take(&mut self.0);
            let _ = write!(self.0, "{value:?}{fields}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.insert_str(0, value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Catch(Arc<Mutex<Vec<(libc::c_int, String)>>>);

    impl Sink for Catch {
        fn send(&self, priority: libc::c_int, line: &str) {
            self.0.lock().unwrap().push((priority, line.to_string()));
        }
    }

    #[test]
    fn warnings_and_errors_become_one_line_each() {
        let catch = Catch::default();
        let layer = SyslogLayer {
            sink: catch.clone(),
        }
        .with_filter(LevelFilter::WARN);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("in_a_span", secret = "do-not-log");
            let _g = span.enter();
            tracing::info!("not sent");
            tracing::debug!("not sent either");
            tracing::warn!(slot = 2, "reconnect of pool member failed: {}", "timed out");
            tracing::error!("two\nlines");
        });
        let got = catch.0.lock().unwrap().clone();
        assert_eq!(
            got,
            [
                (
                    libc::LOG_WARNING,
                    "reconnect of pool member failed: timed out slot=2".to_string()
                ),
                (libc::LOG_ERR, "two lines".to_string()),
            ]
        );
    }
}
