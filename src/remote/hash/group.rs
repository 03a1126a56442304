//! Hashes of single files by a command, asked for while the exec runs are busy, go together
//! in the next run (group commit): an asynchronous mount's queue checks every file it closes
//! (`verify_writes`), and a run of its own for each costs an exec channel's round trips.
//! The first one to wait leads: it takes an exec slot and runs what has gathered meanwhile,
//! batch after batch, in a task of its own, so that a caller given up on (an interrupted
//! request) never strands the others.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::{batch_len, Algo, ExecHow, HashError, ServerHashes};

/// One file waiting for its digest.
struct Waiting {
    path: Vec<u8>,
    size: u64,
    answer: oneshot::Sender<Result<Vec<u8>, HashError>>,
}

/// Files waiting, by algorithm.
#[derive(Default)]
pub(super) struct Gathering {
    waiting: Mutex<HashMap<Algo, Vec<Waiting>>>,
}

impl Gathering {
    /// Adds a file; whether it is the first one waiting for `algo` (then it leads).
    fn join(&self, algo: Algo, w: Waiting) -> bool {
        let mut g = self.waiting.lock().unwrap();
        let q = g.entry(algo).or_default();
        q.push(w);
        q.len() == 1
    }

    /// The next batch for `algo`: as many as one run takes.
    fn take(&self, algo: Algo) -> Vec<Waiting> {
        let mut g = self.waiting.lock().unwrap();
        let Some(q) = g.get_mut(&algo) else {
            return Vec::new();
        };
        let n = batch_len(q.iter().map(|w| w.path.as_slice()));
        q.drain(..n).collect()
    }
}

impl ServerHashes {
    /// The digest of the file at `path` (`size` bytes, as far as known) by the command
    /// `how`, in the next exec run that has a free slot, with whatever else waits for one.
    pub(super) async fn by_exec_gathered(
        &self,
        how: &ExecHow,
        algo: Algo,
        path: &[u8],
        size: u64,
    ) -> Result<Vec<u8>, HashError> {
        // Taken before joining: a file that joins must find a leader, or be one.
        let Some(me) = self.me.upgrade() else {
            return Err(HashError::Failed(libc::EIO, "unmounting".into()));
        };
        let (tx, rx) = oneshot::channel();
        let w = Waiting {
            path: path.to_vec(),
            size,
            answer: tx,
        };
        if self.gathering.join(algo, w) {
            let how = how.clone();
            tokio::spawn(async move { me.lead(&how, algo).await });
        }
        rx.await
            .unwrap_or_else(|_| Err(HashError::Failed(libc::EIO, "the hash run ended".into())))
    }

    /// Runs what waits for `algo`, in one slot, until nothing does.
    async fn lead(self: Arc<Self>, how: &ExecHow, algo: Algo) {
        let Ok(_slot) = self.exec_slots.acquire().await else {
            return;
        };
        loop {
            let batch = self.gathering.take(algo);
            if batch.is_empty() {
                return;
            }
            let paths: Vec<&[u8]> = batch.iter().map(|w| w.path.as_slice()).collect();
            let bytes = batch.iter().map(|w| w.size).sum();
            let got = self.exec_run(how, algo, &paths, self.patience(bytes)).await;
            for (w, r) in batch.into_iter().zip(got) {
                let _ = w.answer.send(r);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{BATCH_FILES, BATCH_NAME_BYTES};
    use super::*;

    fn waiting(name: &str) -> (Waiting, oneshot::Receiver<Result<Vec<u8>, HashError>>) {
        let (tx, rx) = oneshot::channel();
        let w = Waiting {
            path: name.as_bytes().to_vec(),
            size: 1,
            answer: tx,
        };
        (w, rx)
    }

    #[test]
    fn the_first_to_wait_leads_and_a_batch_is_bounded() {
        let g = Gathering::default();
        let mut keep = Vec::new();
        for i in 0..BATCH_FILES + 7 {
            let (w, rx) = waiting(&format!("/f{i}"));
            assert_eq!(g.join(Algo::Sha256, w), i == 0, "file {i}");
            keep.push(rx);
        }
        // Another algorithm gathers apart.
        let (w, _rx) = waiting("/other");
        assert!(g.join(Algo::Md5, w));
        assert_eq!(g.take(Algo::Sha256).len(), BATCH_FILES);
        assert_eq!(g.take(Algo::Sha256).len(), 7);
        assert!(g.take(Algo::Sha256).is_empty());
        // Empty again: the next one leads.
        let (w, _rx) = waiting("/again");
        assert!(g.join(Algo::Sha256, w));
    }

    #[test]
    fn a_name_longer_than_a_batch_goes_alone() {
        let g = Gathering::default();
        let long = "x".repeat(BATCH_NAME_BYTES + 1);
        let (w, _a) = waiting(&long);
        g.join(Algo::Sha256, w);
        let (w, _b) = waiting("/short");
        g.join(Algo::Sha256, w);
        assert_eq!(g.take(Algo::Sha256).len(), 1);
        assert_eq!(g.take(Algo::Sha256).len(), 1);
    }
}
