//! Keeping the kernel's view fresh: `sftpfs refresh MOUNTPOINT [PATH]` and SIGHUP (forget what
//! the mount and the kernel have cached, so that the next look shows the server's truth), and
//! `-o revalidate=SECONDS` (directories in use listed again in the background, changes pushed
//! to the kernel).

use std::sync::{Arc, OnceLock};

use crate::fs::names::revalidate::StaleName;
use crate::fs::Filesystem;
use crate::kernel_cache::KernelCache;

pub struct Refresher {
    fs: Arc<Filesystem>,
    /// Set once the mount exists.
    kernel: OnceLock<KernelCache>,
}

impl Refresher {
    pub fn new(fs: Arc<Filesystem>) -> Arc<Refresher> {
        Arc::new(Refresher {
            fs,
            kernel: OnceLock::new(),
        })
    }

    pub fn kernel_ready(&self, k: KernelCache) {
        let _ = self.kernel.set(k);
    }

    /// Forgets what is cached at or below `path` (relative to the mount root, "" for all);
    /// returns once the kernel has been told. How many names the kernel was told about.
    pub async fn refresh(self: &Arc<Self>, path: &[u8]) -> usize {
        let names = self.fs.refresh(path);
        let n = names.len();
        self.tell_kernel(names, path.is_empty()).await;
        n
    }

    /// Makes the kernel forget `names` (see `KernelCache::forget`), off the runtime's
    /// workers (it blocks), once the mount exists.
    async fn tell_kernel(self: &Arc<Self>, names: Vec<StaleName>, root_too: bool) {
        let me = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(k) = me.kernel.get() {
                k.forget(&names, root_too);
            }
        })
        .await;
    }

    /// `-o revalidate=SECONDS`: every `period`, the directories in use are listed again and
    /// what changed on the server is pushed to the kernel. Nothing is sent while nobody uses
    /// the mount.
    pub fn revalidate_every(self: &Arc<Self>, period: std::time::Duration) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let changed = me.fs.revalidate_round(period).await;
                if changed.is_empty() {
                    continue;
                }
                me.tell_kernel(changed, false).await;
            }
        });
    }

    /// SIGHUP refreshes the whole mount (instead of ending the daemon).
    pub fn on_hangup(self: &Arc<Self>, mut hup: tokio::signal::unix::Signal) {
        let me = self.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP");
                me.refresh(b"").await;
            }
        });
    }
}
