//! A connection is suspect when a request outlives its deadline. A server that stopped
//! answering with its socket open (an sftp-server stuck behind a live sshd, a `directport`
//! peer) is seen by no SSH keepalive, and every request would wait its own whole deadline.
//! So one cheap request (REALPATH ".") probes the connection: when nothing at all comes back
//! within [`probe_wait`], the connection is declared dead. Every request waiting on it fails
//! at once (and is tried again on a new connection where it can be), and the pool connects
//! anew for the next ones.
//!
//! A slow server is not a dead one: while replies keep coming (a long queue on a slow link),
//! the probe waits on, up to one request deadline.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::time::Instant;

use super::bounds::probe_wait;
use super::client::Shared;
use super::error::RemoteError;
use super::protocol::{Packet, SSH_FXP_REALPATH};

/// Probes the connection of `shared`, in the background, unless a probe is under way or the
/// session is over.
pub(super) fn suspect(shared: &Arc<Shared>) {
    if shared.is_closed() || shared.probing.swap(true, Ordering::SeqCst) {
        return;
    }
    let shared = shared.clone();
    tokio::spawn(async move {
        if showed_no_life(&shared).await {
            tracing::debug!("the server answers nothing, not even a probe: connection dead");
            shared.declare_dead(RemoteError::Silent(shared.timeout));
        }
        shared.probing.store(false, Ordering::SeqCst);
    });
}

/// Sends the probe and watches the connection: true when neither the probe's reply nor any
/// other byte came within a [`probe_wait`], or the probe is still unanswered a request
/// deadline later.
async fn showed_no_life(shared: &Arc<Shared>) -> bool {
    // The client is gone, or the session ended meanwhile: nothing to declare.
    let Some(tx) = shared.sender() else {
        return false;
    };
    let Ok(mut probe) = shared.send(&tx, |id| Packet::new(SSH_FXP_REALPATH, id).string(b"."))
    else {
        return false;
    };
    drop(tx);
    let window = probe_wait(shared.timeout);
    let started = Instant::now();
    let mut seen = shared.counters.bytes_in();
    loop {
        if probe.wait_within(window).await.is_some() {
            // Answered, or the session ended some other way.
            return false;
        }
        let now = shared.counters.bytes_in();
        if now == seen || started.elapsed() >= shared.timeout {
            probe.forget();
            return true;
        }
        seen = now;
    }
}
