//! A TCP proxy on 127.0.0.1 that adds latency, for benchmarks on a simulated slow link
//! (`sch_netem` is not available everywhere).
//!
//! ```text
//! netproxy LISTEN_PORT TARGET_PORT [--delay-ms N] [--up-delay-ms N] [--down-delay-ms N]
//! ```
//!
//! `--delay-ms N` delays each direction by N ms, so a round trip takes 2*N ms more: a 20 ms
//! RTT link is `--delay-ms 10`. A delay is not a bandwidth cap: chunks are pipelined. With
//! LISTEN_PORT 0 a free port is chosen. Prints `listening on 127.0.0.1:PORT` once ready, then
//! runs until killed.

#[path = "../tests/support/proxy.rs"]
mod proxy;

use std::process::exit;
use std::time::Duration;

fn usage(why: &str) -> ! {
    eprintln!("netproxy: {why}");
    eprintln!(
        "usage: netproxy LISTEN_PORT TARGET_PORT [--delay-ms N] [--up-delay-ms N] [--down-delay-ms N]"
    );
    exit(2)
}

fn number<T: std::str::FromStr>(what: &str, v: Option<String>) -> T {
    let v = v.unwrap_or_else(|| usage(&format!("{what} needs a value")));
    v.parse()
        .unwrap_or_else(|_| usage(&format!("{what}: not a number: {v:?}")))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut ports = Vec::new();
    let (mut up, mut down) = (0u64, 0u64);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--delay-ms" => {
                up = number(&a, args.next());
                down = up;
            }
            "--up-delay-ms" => up = number(&a, args.next()),
            "--down-delay-ms" => down = number(&a, args.next()),
            "-h" | "--help" => usage("a latency-adding TCP proxy on 127.0.0.1"),
            _ if a.starts_with('-') => usage(&format!("unknown option {a}")),
            _ => ports.push(number::<u16>("port", Some(a))),
        }
    }
    let [listen, target] = ports[..] else {
        usage("expected LISTEN_PORT and TARGET_PORT")
    };
    let p = proxy::Proxy::start_on(listen, target).unwrap_or_else(|e| {
        eprintln!("netproxy: cannot listen on 127.0.0.1:{listen}: {e}");
        exit(1)
    });
    p.delay_dir(proxy::Dir::Up, Duration::from_millis(up));
    p.delay_dir(proxy::Dir::Down, Duration::from_millis(down));
    println!("listening on 127.0.0.1:{}", p.port());
    loop {
        std::thread::park();
    }
}
