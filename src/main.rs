use std::process::ExitCode;
use std::sync::Arc;

use sftpfs::cli::{self, Command};
use sftpfs::config::{IdMapMode, MountConfig};
use sftpfs::env::Env;
use sftpfs::fs::integrity::IntegrityOptions;
use sftpfs::fs::meta::attr::{idmap, IdMap};
use sftpfs::fs::names::charset::NameCharsets;
use sftpfs::fs::{AttrPolicy, CacheOptions, Filesystem, Options, SymlinkPolicy};
use sftpfs::fuse::FuseAdapter;
use sftpfs::remote::hash::{Algo, ServerHashes};
use sftpfs::remote::{transport_for, Pool, PoolOptions, Transport};
use sftpfs::{connect, daemon, logging, mount};

fn main() -> ExitCode {
    // glibc gives every thread that allocates its own arena, and keeps what they held: with
    // the runtime's threads that is ~10 MiB of peak RSS for nothing. Two arenas suffice.
    // SAFETY: called first thing, before any other thread exists.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    let env = Env::from_process();
    let mut cfg = match cli::parse(std::env::args_os(), &env) {
        Ok(Command::Mount(cfg)) => cfg,
        Ok(Command::Help(text) | Command::Version(text) | Command::Completions(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Fake) => return ExitCode::SUCCESS,
        Ok(Command::Reauth(mountpoint)) => {
            return exit_with(sftpfs::status::client::reauth(&mountpoint))
        }
        Ok(Command::Sync(mountpoint)) => {
            return exit_with(sftpfs::status::client::sync(&mountpoint))
        }
        Ok(Command::Refresh { mountpoint, path }) => {
            return exit_with(sftpfs::status::client::refresh(
                &mountpoint,
                path.as_deref(),
            ))
        }
        Ok(Command::Status(req)) => return exit_with(sftpfs::status::client::run(&req)),
        Ok(Command::Replay { mut cfg, dry_run }) => {
            logging::init(cfg.debug, false, std::env::var("SFTPFS_LOG").ok());
            let r =
                sftpfs::ssh::config::resolve(&mut cfg, &env).and_then(|()| replay(cfg, dry_run));
            return exit_with(r);
        }
        Ok(Command::Verify(req)) => {
            return match sftpfs::status::verify::run(&req) {
                Ok(code) => ExitCode::from(code),
                Err(e) => {
                    eprintln!("sftpfs: verify: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Err(e) => {
            eprintln!("sftpfs: {e}");
            return ExitCode::from(1);
        }
    };
    if cfg.fs.transform_symlinks && cfg.fs.contain_symlinks {
        // sshfs 3.7.6's line, word for word (scripts and sshfs's test suite match it): a
        // transformed target that climbs is then refused.
        eprintln!(
            "warning: transform_symlinks with contain_symlinks may reject transformed links \
             containing '..' - consider adding -o no_contain_symlinks"
        );
    }
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
    logging::init(cfg.debug, ready.is_some(), std::env::var("SFTPFS_LOG").ok());
    // ssh_config (HostName, User, Port, IdentityFile, ProxyJump...), once, before anything
    // connects; the command line's settings win. After the logging is set up, so that -d
    // shows what the config file said.
    let result = sftpfs::ssh::config::resolve(&mut cfg, &env).and_then(|()| run(cfg, ready));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            logging::fatal(&e);
            ExitCode::from(1)
        }
    }
}

/// A subcommand's end: its one-line error, if any, and the exit status.
fn exit_with(r: Result<(), String>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sftpfs: {e}");
            ExitCode::from(1)
        }
    }
}

/// The pool's options from the mount's: a transport may allow fewer connections (passive:
/// one, never replaced).
fn pool_options(cfg: &MountConfig, transport: &dyn Transport) -> PoolOptions {
    PoolOptions {
        max_conns: transport
            .max_connections()
            .map_or(cfg.fs.max_conns, |m| m.min(cfg.fs.max_conns)),
        timeout: cfg.fs.request_timeout,
        reconnect: cfg.fs.reconnect && transport.can_reconnect(),
        idle: cfg.fs.pool_idle,
    }
}

fn run(cfg: MountConfig, ready: Option<daemon::Ready>) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let transport: Arc<dyn Transport> = transport_for(&cfg)?;
    // Hashes by a command on the server run beside the pool's sessions, on its connections.
    let exec_transport = transport.clone();
    let pool_options = pool_options(&cfg, transport.as_ref());
    // idmap=file: the files are read before connecting, so that their errors come first.
    let file_idmap = match cfg.fs.idmap {
        IdMapMode::File => Some(idmap::from_files(
            cfg.fs.uidfile.as_deref(),
            cfg.fs.gidfile.as_deref(),
            cfg.fs.nomap,
        )?),
        _ => None,
    };
    let (pool, root, home_owner) = rt.block_on(async {
        let pool = Pool::connect(transport, pool_options).await?;
        let (root, home_owner) = {
            let first = pool.get(0).await.map_err(|e| e.to_string())?;
            let root = connect::resolve_root(&first.sftp, &cfg).await?;
            connect::check_subdir(&first.sftp, &root, &cfg).await?;
            // idmap=user: the remote user is the owner of the remote home, as in sshfs.
            let home_owner = match cfg.fs.idmap {
                IdMapMode::User => {
                    (first.sftp.stat(b".").await)
                        .map_err(|e| format!("-o idmap=user: cannot stat the remote home: {e}"))?
                        .uid_gid
                }
                _ => None,
            };
            (root, home_owner)
        };
        Ok::<_, String>((pool, root, home_owner))
    })?;
    let idmap = match cfg.fs.idmap {
        IdMapMode::None => IdMap::None,
        IdMapMode::User => idmap::for_user(home_owner)?,
        IdMapMode::File => file_idmap.expect("loaded above"),
    };
    let hashes = ServerHashes::new(
        pool.clone(),
        exec_transport,
        cfg.fs.hash_command.clone(),
        cfg.fs.request_timeout,
    );
    let verify_writes = match cfg.fs.verify_writes {
        true => Some(rt.block_on(verify_writes_algorithm(&hashes))?),
        false => None,
    };
    let mut opts = fs_options(&cfg, idmap);
    opts.integrity = IntegrityOptions {
        hashes: Some(hashes.clone()),
        verify_writes,
    };
    // What the server can hash is found when first needed (a hash xattr, sftpfs verify,
    // verify_writes above), not at every mount: the probe's exec session would cost the
    // server a login and processes for as long as the mount lives, idle or not.
    drop(hashes);
    let journal = rt.block_on(connect::open_journal(&cfg, &pool, &root, &opts))?;
    let fs = Filesystem::with_journal(pool.clone(), root, opts, journal);
    // What an earlier mount left in the journal lands before anything is served.
    rt.block_on(fs.replay(false));
    let adapter = FuseAdapter::new(
        fs.clone(),
        rt.handle().clone(),
        cfg.fs.entry_timeout,
        cfg.fs.attr_timeout,
    );
    let signals = rt
        .block_on(async { mount::Signals::catch() })
        .map_err(|e| format!("cannot catch signals: {e}"))?;
    // Before the mount appears: a `sftpfs status` as soon as it is there finds it.
    let info = status_info(&cfg);
    let refresher = sftpfs::status::refresh::Refresher::new(fs.clone());
    let _listening = rt.block_on(async {
        sftpfs::status::server::start(fs.clone(), info, refresher.clone())
            .map_err(|e| {
                tracing::warn!("no status socket (sftpfs status will not see this mount): {e}")
            })
            .ok()
    });
    let mut signals = signals;
    let session = mount::mount(adapter, &cfg)?;
    let dev = std::os::fd::AsFd::as_fd(&session).try_clone_to_owned().ok();
    refresher.kernel_ready(sftpfs::kernel_cache::KernelCache::new(
        session.notifier(),
        dev,
    ));
    rt.block_on(async {
        if !cfg.foreground {
            refresher.on_hangup(signals.take_hangup());
        }
        if !cfg.fs.revalidate.is_zero() {
            refresher.revalidate_every(cfg.fs.revalidate);
        }
    });
    if let Some(r) = ready {
        r.ready();
    }
    let land = {
        let fs = fs.clone();
        futures::FutureExt::boxed(async move { fs.land_before_exit().await })
    };
    let served = mount::serve(session, signals, &cfg.mountpoint, rt.handle(), land);
    fs.shutdown();
    pool.shutdown();
    served.map_err(|e| format!("FUSE session ended with an error: {e}"))
}

/// `sftpfs replay [--dry-run] SOURCE`: what a mount's journal left behind is sent (or, dry,
/// checked) without mounting, one line per operation on stdout.
fn replay(cfg: MountConfig, dry_run: bool) -> Result<(), String> {
    use sftpfs::fs::write::journal::{directory::JournalDir, replay, Journal};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let base = (cfg.fs.journal_dir.clone()).ok_or(
        "replay: cannot tell where the journal is (HOME is unset); give -o journal_dir=PATH",
    )?;
    let transport: Arc<dyn Transport> = transport_for(&cfg)?;
    let pool_options = pool_options(&cfg, transport.as_ref());
    rt.block_on(async {
        let pool = Pool::connect(transport, pool_options).await?;
        let root = {
            let first = pool.get(0).await.map_err(|e| e.to_string())?;
            let root = connect::resolve_root(&first.sftp, &cfg).await?;
            connect::check_subdir(&first.sftp, &root, &cfg).await?;
            root
        };
        let source = connect::journal_source(&cfg, &root);
        if !JournalDir::left_behind(&base, &source) {
            println!(
                "nothing to replay: no journal of {} in {}",
                source.describe(),
                base.display()
            );
            return Ok(());
        }
        let dir = JournalDir::open(&base, &source).map_err(|e| format!("replay: {e}"))?;
        let opts = Options {
            async_writes: !dry_run,
            ..fs_options(&cfg, IdMap::None)
        };
        if dry_run {
            let loaded = replay::load_untouched(&dir);
            for d in &loaded.damage {
                println!("damaged: {d}");
            }
            let fs = Filesystem::new(pool.clone(), root, opts);
            for line in fs.replay_dry_run(&dir.path, &loaded).await {
                println!("{line}");
            }
            println!(
                "{} operations would be sent or checked ({} of {} found were answered before)",
                loaded.pending(),
                loaded.answered,
                loaded.found
            );
            return Ok(());
        }
        let journal = Journal::open(dir, cfg.fs.journal_max, opts.write_behind_bytes)?;
        let damage = journal.status().damage;
        for d in &damage {
            println!("damaged: {d}");
        }
        let fs = Filesystem::with_journal(pool.clone(), root, opts, Some(journal));
        let (counts, lines) = fs.replay(true).await;
        for line in lines {
            println!("{line}");
        }
        fs.settle_all().await;
        pool.shutdown();
        println!(
            "replayed: {} sent, {} already there, {} conflicts (both versions kept), {} failed",
            counts.sent, counts.already, counts.conflicts, counts.failed
        );
        if counts.failed > 0 || counts.conflicts > 0 {
            return Err(format!(
                "replay of {}: {} failed, {} conflicts (see above)",
                source.describe(),
                counts.failed,
                counts.conflicts
            ));
        }
        Ok(())
    })
}

/// `verify_writes`: the best hash the server computes; none is the mount's failure.
async fn verify_writes_algorithm(hashes: &ServerHashes) -> Result<Algo, String> {
    match hashes.best().await {
        Some(a) => {
            tracing::info!("verify_writes: files written whole are checked by {a}");
            Ok(a)
        }
        None => Err(format!(
            "-o verify_writes: this server computes no hash ({}); mount without \
             verify_writes, or give -o hash_command=",
            hashes.status().missing
        )),
    }
}

fn status_info(cfg: &MountConfig) -> sftpfs::status::server::MountInfo {
    use sftpfs::config::TransportKind;
    sftpfs::status::server::MountInfo {
        // Canonical, as `sftpfs status MOUNTPOINT` will name it; before the mount covers it.
        mountpoint: std::fs::canonicalize(&cfg.mountpoint).unwrap_or(cfg.mountpoint.clone()),
        source: cfg.source.clone(),
        user: cfg.ssh.user.clone(),
        host: cfg.ssh.host.clone(),
        port: cfg.ssh.port,
        transport: match cfg.transport.kind() {
            TransportKind::Ssh => "ssh".into(),
            // Its program only: the rest of a command line is nobody else's business.
            TransportKind::Command(words) => {
                format!("ssh_command ({})", words.first().map_or("", String::as_str))
            }
            TransportKind::Direct(port) => format!("directport {port}"),
            TransportKind::Passive => "passive".into(),
        },
        remote_dir: String::from_utf8_lossy(&cfg.fs.remote_dir).into_owned(),
        pid: std::process::id(),
        revalidate: cfg.fs.revalidate,
        started: std::time::SystemTime::now(),
        started_at: std::time::Instant::now(),
    }
}

fn fs_options(cfg: &MountConfig, idmap: IdMap) -> Options {
    Options {
        policy: AttrPolicy::new(&cfg.fs, idmap),
        read_only: cfg.fs.read_only,
        cache: CacheOptions {
            enabled: cfg.fs.dir_cache,
            stat_ttl: cfg.fs.dcache_stat_timeout,
            dir_ttl: cfg.fs.dcache_dir_timeout,
            link_ttl: cfg.fs.dcache_link_timeout,
            negative_ttl: cfg.fs.negative_timeout.unwrap_or_default(),
            max_size: cfg.fs.dcache_max_size,
            clean_interval: cfg.fs.dcache_clean_interval,
            min_clean_interval: cfg.fs.dcache_min_clean_interval,
        },
        prefetch: cfg.fs.prefetch,
        symlinks: SymlinkPolicy {
            contain: cfg.fs.contain_symlinks,
            transform: cfg.fs.transform_symlinks,
            follow: cfg.fs.follow_symlinks,
            subdir: cfg.fs.subdir.clone(),
            rellinks: cfg.fs.rellinks,
        },
        hardlinks: !cfg.fs.disable_hardlink,
        sync_writes: cfg.fs.sync_writes,
        async_writes: cfg.fs.async_writes,
        direct_io: cfg.fs.direct_io,
        workarounds: cfg.fs.workarounds,
        ignore_attr_refusals: cfg.fs.ignore_attr_refusals,
        // Both sides in the same character set: nothing to convert, at no cost.
        charsets: cfg.fs.name_charsets.and_then(|c| {
            let names = NameCharsets::new(c.server, c.local)?;
            tracing::debug!(
                "file names: {} on the server, {} locally",
                c.server.name(),
                c.local.name()
            );
            Some(Arc::new(names))
        }),
        ..Options::default()
    }
}
