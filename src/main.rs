use std::process::ExitCode;
use std::sync::Arc;

use sftpfs::cli::{self, Command, Env};
use sftpfs::config::MountConfig;
use sftpfs::fs::{AttrPolicy, Filesystem, Options};
use sftpfs::fuse::FuseAdapter;
use sftpfs::ssh::Connector;
use sftpfs::{connect, daemon, mount};

fn main() -> ExitCode {
    let cfg = match cli::parse(std::env::args_os(), &Env::from_process()) {
        Ok(Command::Mount(cfg)) => cfg,
        Ok(Command::Help(text)) | Ok(Command::Version(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("sftpfs: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = connect::check_mountpoint(&cfg) {
        eprintln!("sftpfs: {e}");
        return ExitCode::from(1);
    }
    // Fork before any thread or runtime exists; the parent returns only through exit().
    let ready = if cfg.foreground {
        None
    } else {
        match daemon::fork_and_wait() {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("sftpfs: cannot go to the background: {e}");
                return ExitCode::from(1);
            }
        }
    };
    init_logging(&cfg);
    match run(cfg, ready) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sftpfs: {e}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(cfg: &MountConfig) {
    let level = if cfg.debug { "debug" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SFTPFS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("sftpfs={level},warn")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn run(cfg: MountConfig, ready: Option<daemon::Ready>) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let connector = Connector::new(cfg.ssh.clone());
    let (ssh, sftp, root) = rt.block_on(async {
        let (ssh, sftp) = connect::open_sftp(&connector, cfg.fs.request_timeout).await?;
        let root = connect::resolve_root(&sftp, &cfg).await?;
        Ok::<_, String>((ssh, sftp, root))
    })?;
    let fs = Filesystem::new(
        Arc::new(sftp),
        root,
        Options {
            policy: AttrPolicy {
                uid: cfg.fs.uid,
                gid: cfg.fs.gid,
                umask: cfg.fs.umask,
            },
            read_only: cfg.fs.read_only,
        },
    );
    let adapter = FuseAdapter::new(
        Arc::new(fs),
        rt.handle().clone(),
        cfg.fs.entry_timeout,
        cfg.fs.attr_timeout,
    );
    let session = mount::mount(adapter, &cfg)?;
    if let Some(r) = ready {
        r.ready();
    }
    let served = mount::serve(session, rt.handle());
    rt.block_on(ssh.disconnect());
    served.map_err(|e| format!("FUSE session ended with an error: {e}"))
}
