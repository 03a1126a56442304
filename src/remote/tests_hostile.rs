//! The SFTP session against a fake server that misbehaves (over an in-memory pipe, with
//! tokio's paused clock, so that deadlines pass at once): replies to ids never issued, late
//! replies, silence, listings that never end, READ replies longer than asked.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::bounds::{probe_wait, ListingBound};
use super::error::RemoteError;
use super::protocol::*;
use super::sftp::{Handle, Sftp};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A session with a fake server: VERSION, then for each request (type, id) the packets
/// `answer` returns.
async fn fake(mut answer: impl FnMut(u8, u32) -> Vec<Bytes> + Send + 'static) -> Sftp {
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    tokio::spawn(async move {
        let (mut r, mut w) = tokio::io::split(theirs);
        let mut init = [0u8; 9];
        r.read_exact(&mut init).await.unwrap();
        w.write_all(&Packet::new(SSH_FXP_VERSION, 3).finish())
            .await
            .unwrap();
        loop {
            let mut len = [0u8; 4];
            if r.read_exact(&mut len).await.is_err() {
                return;
            }
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            if r.read_exact(&mut body).await.is_err() {
                return;
            }
            let id = u32::from_be_bytes([body[1], body[2], body[3], body[4]]);
            for p in answer(body[0], id) {
                if w.write_all(&p).await.is_err() {
                    return;
                }
            }
        }
    });
    Sftp::start(ours, TIMEOUT).await.unwrap()
}

fn status(id: u32, code: u32) -> Bytes {
    Packet::new(SSH_FXP_STATUS, id)
        .u32(code)
        .string(b"")
        .string(b"")
        .finish()
}

fn attrs(id: u32) -> Bytes {
    Packet::new(SSH_FXP_ATTRS, id)
        .attrs(&Attrs::default())
        .finish()
}

fn one_name(id: u32) -> Bytes {
    Packet::new(SSH_FXP_NAME, id)
        .u32(1)
        .string(b"/")
        .string(b"")
        .attrs(&Attrs::default())
        .finish()
}

#[tokio::test(start_paused = true)]
async fn a_reply_to_an_id_never_issued_ends_the_session_at_once() {
    let s = fake(|_, id| vec![attrs(id.wrapping_add(1000))]).await;
    let started = tokio::time::Instant::now();
    let e = s.lstat(b"/x").await.unwrap_err();
    assert!(started.elapsed() < TIMEOUT, "waited the deadline");
    assert!(e.to_string().contains("never issued"), "{e}");
    assert!(e.is_dead(), "{e:?}");
    assert!(s.is_closed());
}

#[tokio::test(start_paused = true)]
async fn a_late_reply_to_a_request_that_expired_is_no_violation() {
    // The first LSTAT is answered only after the probe that its timing out sends.
    let mut held = None;
    let s = fake(move |kind, id| match kind {
        SSH_FXP_LSTAT if held.is_none() => {
            held = Some(id);
            vec![]
        }
        SSH_FXP_REALPATH => vec![attrs(held.unwrap()), one_name(id)],
        _ => vec![attrs(id)],
    })
    .await;
    let e = s.lstat(b"/slow").await.unwrap_err();
    assert!(matches!(e, RemoteError::Timeout(_)), "{e:?}");
    // The probe is answered (after the late reply): the session stays.
    tokio::time::sleep(probe_wait(TIMEOUT) * 2).await;
    assert!(!s.is_closed());
    s.lstat(b"/next").await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_silent_server_is_declared_dead_after_one_probe() {
    let s = fake(|_, _| vec![]).await;
    let started = tokio::time::Instant::now();
    let first = s.lstat(b"/a");
    // A second request, sent while the first waits: it fails when the connection is found
    // dead, before its own deadline.
    let second = async {
        tokio::time::sleep(TIMEOUT / 2).await;
        let r = s.lstat(b"/b").await;
        (r, started.elapsed())
    };
    let (first, (second, at)) = tokio::join!(first, second);
    assert!(matches!(first, Err(RemoteError::Timeout(_))), "{first:?}");
    assert!(matches!(second, Err(RemoteError::Silent(_))), "{second:?}");
    assert!(
        at < TIMEOUT + probe_wait(TIMEOUT) + Duration::from_secs(1),
        "{at:?}"
    );
    assert!(s.is_closed() && s.went_silent());
    // Later requests fail at once, saying why.
    let e = s.lstat(b"/c").await.unwrap_err();
    assert!(e.to_string().contains("stopped answering"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn a_server_that_answers_the_probe_keeps_its_connection() {
    // One request is never answered (a server that lost it); everything else is.
    let s = fake(|kind, id| match kind {
        SSH_FXP_LSTAT => vec![],
        SSH_FXP_REALPATH => vec![one_name(id)],
        _ => vec![attrs(id)],
    })
    .await;
    assert!(matches!(
        s.lstat(b"/lost").await,
        Err(RemoteError::Timeout(_))
    ));
    tokio::time::sleep(probe_wait(TIMEOUT) * 2).await;
    assert!(!s.is_closed());
    s.stat(b"/fine").await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_listing_that_never_ends_is_refused_at_its_bound() {
    let names = |id: u32, n: usize, len: usize| {
        let mut p = Packet::new(SSH_FXP_NAME, id).u32(n as u32);
        for i in 0..n {
            let name = format!("{i:0len$}");
            p = p
                .string(name.as_bytes())
                .string(b"")
                .attrs(&Attrs::default());
        }
        p.finish()
    };
    let s = fake(move |kind, id| match kind {
        SSH_FXP_OPENDIR => vec![Packet::new(SSH_FXP_HANDLE, id).string(b"h").finish()],
        SSH_FXP_READDIR => vec![names(id, 100, 10)],
        _ => vec![status(id, SSH_FX_OK)],
    })
    .await;
    let bound = ListingBound {
        entries: 1000,
        name_bytes: 1 << 20,
        time: TIMEOUT * 10,
    };
    let e = s.read_dir_all(b"/endless", &bound).await.unwrap_err();
    assert!(
        matches!(&e, RemoteError::Exceeded(m) if m.contains("1000 entries")),
        "{e}"
    );
    let bound = ListingBound {
        entries: 1_000_000,
        name_bytes: 5000,
        ..bound
    };
    let e = s.read_dir_all(b"/endless", &bound).await.unwrap_err();
    assert!(
        matches!(&e, RemoteError::Exceeded(m) if m.contains("5000 bytes")),
        "{e}"
    );
    assert_eq!(e.errno(), libc::EIO);
    // The session is fine: only the listing was refused.
    assert!(!s.is_closed());
}

#[tokio::test(start_paused = true)]
async fn a_read_reply_longer_than_asked_is_an_error() {
    let s = fake(|kind, id| match kind {
        SSH_FXP_READ => vec![Packet::new(SSH_FXP_DATA, id).string(&[0; 200]).finish()],
        _ => vec![status(id, SSH_FX_OK)],
    })
    .await;
    let e = s.read(&Handle(b"h".to_vec()), 0, 100).await.unwrap_err();
    assert!(e.to_string().contains("answered with 200"), "{e}");
    assert_eq!(e.errno(), libc::EIO);
}

#[tokio::test(start_paused = true)]
async fn a_session_nothing_can_replace_only_times_out() {
    // noreconnect, passive: a server that is only slow must not end the mount.
    let s = fake(|_, _| vec![]).await;
    s.never_declare_dead();
    assert!(matches!(s.lstat(b"/a").await, Err(RemoteError::Timeout(_))));
    tokio::time::sleep(probe_wait(TIMEOUT) * 2).await;
    assert!(!s.is_closed());
    assert!(matches!(s.lstat(b"/b").await, Err(RemoteError::Timeout(_))));
}
