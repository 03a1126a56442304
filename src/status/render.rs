//! The status document as a screen of text, or as Prometheus text (the node exporter's
//! textfile format): same numbers, read from the JSON the daemon sent.

use std::fmt::Write;

use serde_json::Value;

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// 1536 → "1.5 KiB".
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

fn duration(secs: f64) -> String {
    let t = secs as u64;
    let (d, h, m, s) = (t / 86400, t / 3600 % 24, t / 60 % 60, t % 60);
    if d > 0 {
        format!("{d}d {h}h {m:02}m")
    } else if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else {
        format!("{m}m {s:02}s")
    }
}

fn clock(unix: f64) -> String {
    // Local time as the C library knows it.
    let t = unix as libc::time_t;
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return format!("{unix:.0}");
    }
    format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
}

/// The screen of `sftpfs status MOUNTPOINT`.
pub fn text(v: &Value) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{}: {} ({}), pid {}, up {}",
        s(&v["mountpoint"]),
        s(&v["source"]),
        s(&v["transport"]),
        u(&v["pid"]),
        duration(v["uptime_seconds"].as_f64().unwrap_or(0.0))
    );
    let _ = writeln!(
        o,
        "  {}",
        v["server"].as_str().unwrap_or("server: not connected yet")
    );
    if v["needs_authentication"] == true {
        let _ = writeln!(
            o,
            "  needs authentication: the connection is lost and logging in again needs you: \
             sftpfs reauth {}",
            s(&v["mountpoint"])
        );
    }
    let members = v["connections"].as_array().map_or(&[][..], |a| a);
    let _ = writeln!(
        o,
        "connections: {} up of {} (one at rest; more for parallel work, closed after {} with \
         nothing to do); opened since mount {}, closed at rest {}",
        members.iter().filter(|c| c["state"] == "up").count(),
        members.len(),
        duration(v["pool"]["idle_seconds"].as_f64().unwrap_or(0.0)),
        u(&v["pool"]["sessions_opened"]),
        u(&v["pool"]["closed_at_rest"]),
    );
    if let Some(r) = v["pool"]["refused"].as_object() {
        let _ = writeln!(
            o,
            "  the server refused another connection at {} ({}; {} time(s) since mount): \
             running with fewer",
            clock(r["time"].as_f64().unwrap_or(0.0)),
            s(&r["reason"]),
            u(&r["count"])
        );
    }
    for c in members {
        let state = s(&c["state"]);
        let _ = write!(o, "  #{} {:<10}", u(&c["member"]), state);
        if u(&c["requests"]) > 0 || state == "up" {
            let rtt = c["rtt_seconds"]
                .as_f64()
                .map_or("-".to_string(), |r| format!("{:.1} ms", r * 1000.0));
            let _ = write!(
                o,
                " rtt {rtt:>8}  in {:>10}  out {:>10}  requests {} ({} in flight)  reconnects {}",
                bytes(u(&c["bytes_in"])),
                bytes(u(&c["bytes_out"])),
                u(&c["requests"]),
                u(&c["requests_in_flight"]),
                u(&c["reconnects"])
            );
        }
        o.push('\n');
    }
    let unacked = u(&v["unacknowledged_write_bytes"]);
    let _ = writeln!(
        o,
        "open files: {}; writes not yet on the server: {}{}",
        u(&v["open_files"]),
        bytes(unacked),
        if unacked == 0 { " (all written)" } else { "" }
    );
    if let Some(q) = v["async_writes"].as_object() {
        let oldest = q["oldest_queued_seconds"]
            .as_f64()
            .map_or(String::new(), |s| format!(", oldest {} old", duration(s)));
        let _ = writeln!(
            o,
            "asynchronous writes: {} operations queued ({}){oldest}; {} failed, {} conflicts \
             since mount",
            u(&q["queued_operations"]),
            bytes(u(&q["queued_bytes"])),
            u(&q["failed_operations"]),
            u(&q["conflicts"])
        );
        if let Some(since) = q["offline_since"].as_u64() {
            let _ = writeln!(
                o,
                "  offline since {}, {} operations / {} waiting",
                clock(since as f64),
                u(&q["queued_operations"]),
                bytes(u(&q["queued_bytes"]))
            );
        }
        let (syncs, synced) = (u(&q["fdatasyncs"]), u(&q["operations_synced"]));
        let _ = writeln!(
            o,
            "  journal: {} ({} on disk; {} operations in {} fdatasyncs)",
            s(&q["journal"]),
            bytes(u(&q["journal_bytes"])),
            synced,
            syncs
        );
        if let Some(e) = q["last_error"].as_str() {
            let _ = writeln!(o, "  last error: {e}");
        }
        for d in q["replay_damage"].as_array().into_iter().flatten() {
            let _ = writeln!(o, "  cut at replay: {}", s(d));
        }
        let r = &q["replayed"];
        if ["sent", "already_there", "conflicts", "failed"]
            .iter()
            .any(|k| u(&r[*k]) > 0)
        {
            let _ = writeln!(
                o,
                "  replayed at mount: {} sent, {} already there, {} conflicts, {} failed",
                u(&r["sent"]),
                u(&r["already_there"]),
                u(&r["conflicts"]),
                u(&r["failed"])
            );
        }
    }
    if let Some(h) = v["hashes"].as_object() {
        let (means, missing) = (
            h["means"].as_str().unwrap_or(""),
            h["missing"].as_str().unwrap_or(""),
        );
        let what = match (means.is_empty(), missing.is_empty()) {
            (true, _) => format!("none ({missing})"),
            (false, true) => means.to_string(),
            (false, false) => format!("{means} ({missing})"),
        };
        let _ = writeln!(
            o,
            "hashes on the server: {what}; {} computed, {} failed, {} command runs",
            u(&h["computed"]),
            u(&h["failed"]),
            u(&h["exec_runs"])
        );
    }
    if let Some(w) = v["verify_writes"].as_object() {
        let bad = u(&w["mismatched"]);
        let _ = writeln!(
            o,
            "verify_writes ({}): {} verified, {} {}, {} not checked, {} could not be checked, \
             {} changed by another",
            w["algorithm"].as_str().unwrap_or("?"),
            u(&w["verified"]),
            bad,
            if bad > 0 {
                "MISMATCHED (close failed with EIO)"
            } else {
                "mismatched"
            },
            u(&w["unchecked"]),
            u(&w["failed"]),
            u(&w["changed"])
        );
    }
    let cache = |name: &str, c: &Value| {
        let (h, m) = (u(&c["hits"]), u(&c["misses"]));
        let rate = if h + m == 0 {
            "-".to_string()
        } else {
            format!("{:.0}%", 100.0 * h as f64 / (h + m) as f64)
        };
        format!(
            "{name} {} ({rate} hits, {})",
            u(&c["entries"]),
            bytes(u(&c["bytes"]))
        )
    };
    let _ = writeln!(o, "names the kernel holds: {} inodes", u(&v["inodes"]));
    let _ = writeln!(
        o,
        "caches: {}, {}, {}; read-ahead {} ({} files ahead)",
        cache("attributes", &v["caches"]["attributes"]),
        cache("listings", &v["caches"]["listings"]),
        cache("links", &v["caches"]["links"]),
        bytes(u(&v["readahead_bytes"])),
        u(&v["files_read_ahead"])
    );
    let r = &v["revalidation"];
    match r["period_seconds"].as_f64() {
        Some(p) if p > 0.0 => {
            let _ = writeln!(
                o,
                "revalidation every {p} s: {} requests, {} out, {} in since mount",
                u(&r["requests"]),
                bytes(u(&r["bytes_out"])),
                bytes(u(&r["bytes_in"]))
            );
        }
        Some(_) => {
            let _ = writeln!(o, "revalidation: off");
        }
        None => {}
    }
    let total = u(&v["errors"]["total"]);
    if total == 0 {
        let _ = writeln!(o, "errors since mount: none");
    } else {
        let by: Vec<String> = v["errors"]["by_errno"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, n)| format!("{k} {}", u(n)))
            .collect();
        let _ = writeln!(o, "errors since mount: {total} ({})", by.join(", "));
        for e in v["errors"]["recent"].as_array().into_iter().flatten() {
            let _ = writeln!(
                o,
                "  {} {} {}: {}",
                clock(e["time"].as_f64().unwrap_or(0.0)),
                s(&e["op"]),
                if s(&e["path"]).is_empty() {
                    "/"
                } else {
                    s(&e["path"])
                },
                s(&e["errno"])
            );
        }
    }
    o
}

/// One line per mount for `sftpfs status` without a mount point.
pub fn summary(v: &Value) -> String {
    let members = v["connections"].as_array().map_or(&[][..], |a| a);
    let up = members.iter().filter(|c| c["state"] == "up").count();
    format!(
        "{}  {}  up {}  connections {up}/{}  open files {}  unwritten {}  errors {}",
        s(&v["mountpoint"]),
        s(&v["source"]),
        duration(v["uptime_seconds"].as_f64().unwrap_or(0.0)),
        members.len(),
        u(&v["open_files"]),
        bytes(u(&v["unacknowledged_write_bytes"])),
        u(&v["errors"]["total"])
    )
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Prometheus text for one or more mounts: each metric's HELP and TYPE once, then a sample
/// per mount (and member, cache, errno).
pub fn prometheus(mounts: &[Value]) -> String {
    type Samples<'a> = Box<dyn Fn(&Value, &str) -> Vec<String> + 'a>;
    let gauge = |path: &'static [&'static str]| -> Samples {
        Box::new(move |v: &Value, m: &str| {
            let mut x = v;
            for p in path {
                x = &x[*p];
            }
            vec![format!("{{mountpoint=\"{m}\"}} {}", num(x))]
        })
    };
    let per_member = |field: &'static str| -> Samples {
        Box::new(move |v: &Value, m: &str| {
            v["connections"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| !c[field].is_null() || field != "rtt_seconds")
                .map(|c| {
                    let val = if field == "up" {
                        ((c["state"] == "up") as u8).to_string()
                    } else {
                        num(&c[field])
                    };
                    format!(
                        "{{mountpoint=\"{m}\",member=\"{}\"}} {val}",
                        u(&c["member"])
                    )
                })
                .collect()
        })
    };
    // Only for a mount with `async_writes`.
    let queue = |field: &'static str| -> Samples {
        Box::new(move |v: &Value, m: &str| {
            (v["async_writes"].get(field).into_iter())
                .filter(|x| !x.is_null())
                .map(|x| format!("{{mountpoint=\"{m}\"}} {}", num(x)))
                .collect()
        })
    };
    // Only for a mount with `verify_writes`, one sample per outcome.
    let verified = Box::new(move |v: &Value, m: &str| -> Vec<String> {
        ["verified", "mismatched", "unchecked", "failed", "changed"]
            .iter()
            .filter_map(|r| {
                let x = v["verify_writes"].get(*r)?;
                Some(format!("{{mountpoint=\"{m}\",result=\"{r}\"}} {}", num(x)))
            })
            .collect()
    }) as Samples;
    let hashes = Box::new(move |v: &Value, m: &str| -> Vec<String> {
        (v["hashes"].get("computed").into_iter())
            .map(|x| format!("{{mountpoint=\"{m}\"}} {}", num(x)))
            .collect()
    }) as Samples;
    // Only for a mount that revalidates.
    let revalidation = |field: &'static str| -> Samples {
        Box::new(move |v: &Value, m: &str| {
            let r = &v["revalidation"];
            (r["period_seconds"].as_f64().is_some_and(|p| p > 0.0))
                .then(|| format!("{{mountpoint=\"{m}\"}} {}", num(&r[field])))
                .into_iter()
                .collect()
        })
    };
    let per_cache = |field: &'static str| -> Samples {
        Box::new(move |v: &Value, m: &str| {
            ["attributes", "listings", "links"]
                .iter()
                .map(|c| {
                    format!(
                        "{{mountpoint=\"{m}\",cache=\"{c}\"}} {}",
                        num(&v["caches"][c][field])
                    )
                })
                .collect()
        })
    };
    let metrics: Vec<(&str, &str, &str, Samples)> = vec![
        (
            "sftpfs_uptime_seconds",
            "gauge",
            "Seconds since the mount was made.",
            gauge(&["uptime_seconds"]),
        ),
        (
            "sftpfs_connection_up",
            "gauge",
            "1 when the pool member has a live SFTP session.",
            per_member("up"),
        ),
        (
            "sftpfs_pool_sessions_opened_total",
            "counter",
            "SFTP sessions opened since the mount: the first, members added for parallel work, reconnects.",
            gauge(&["pool", "sessions_opened"]),
        ),
        (
            "sftpfs_pool_closed_at_rest_total",
            "counter",
            "Pool members closed after pool_idle with nothing to do.",
            gauge(&["pool", "closed_at_rest"]),
        ),
        (
            "sftpfs_pool_refused_total",
            "counter",
            "Connections the server refused when the pool grew (MaxStartups, MaxSessions).",
            Box::new(|v: &Value, m: &str| {
                vec![format!("{{mountpoint=\"{m}\"}} {}", u(&v["pool"]["refused"]["count"]))]
            }),
        ),
        (
            "sftpfs_connection_rtt_seconds",
            "gauge",
            "Smoothed round trip of small SFTP requests.",
            per_member("rtt_seconds"),
        ),
        (
            "sftpfs_connection_received_bytes_total",
            "counter",
            "SFTP bytes received from the server.",
            per_member("bytes_in"),
        ),
        (
            "sftpfs_connection_sent_bytes_total",
            "counter",
            "SFTP bytes sent to the server.",
            per_member("bytes_out"),
        ),
        (
            "sftpfs_connection_requests_total",
            "counter",
            "SFTP requests sent.",
            per_member("requests"),
        ),
        (
            "sftpfs_connection_requests_in_flight",
            "gauge",
            "SFTP requests waiting for their reply.",
            per_member("requests_in_flight"),
        ),
        (
            "sftpfs_connection_round_trips_total",
            "counter",
            "Requests sent while none was waiting for its reply: the round trips a program waited for, at most.",
            per_member("round_trips"),
        ),
        (
            "sftpfs_connection_reconnects_total",
            "counter",
            "Times the pool member was reconnected.",
            per_member("reconnects"),
        ),
        (
            "sftpfs_open_files",
            "gauge",
            "Files open through the mount.",
            gauge(&["open_files"]),
        ),
        (
            "sftpfs_opens_total",
            "counter",
            "Files opened through the mount.",
            gauge(&["opens", "total"]),
        ),
        (
            "sftpfs_opens_kept_pages_total",
            "counter",
            "Opens that let the kernel keep the pages it held of the file.",
            gauge(&["opens", "kept_pages"]),
        ),
        (
            "sftpfs_unacknowledged_write_bytes",
            "gauge",
            "Bytes written through the mount and not yet acknowledged by the server.",
            gauge(&["unacknowledged_write_bytes"]),
        ),
        (
            "sftpfs_readahead_bytes",
            "gauge",
            "Bytes held by read-ahead.",
            gauge(&["readahead_bytes"]),
        ),
        (
            "sftpfs_files_read_ahead",
            "gauge",
            "Files read ahead across files, waiting to be opened.",
            gauge(&["files_read_ahead"]),
        ),
        (
            "sftpfs_async_queued_operations",
            "gauge",
            "Operations answered and queued, not yet answered by the server (async_writes).",
            queue("queued_operations"),
        ),
        (
            "sftpfs_async_queued_bytes",
            "gauge",
            "Bytes of queued writes not yet answered by the server (async_writes).",
            queue("queued_bytes"),
        ),
        (
            "sftpfs_async_failed_operations_total",
            "counter",
            "Queued operations the server refused (async_writes).",
            queue("failed_operations"),
        ),
        (
            "sftpfs_async_conflicts_total",
            "counter",
            "Queued changes whose target changed on the server; both versions kept (async_writes).",
            queue("conflicts"),
        ),
        (
            "sftpfs_async_oldest_queued_seconds",
            "gauge",
            "Age of the oldest operation not yet answered by the server (async_writes).",
            queue("oldest_queued_seconds"),
        ),
        (
            "sftpfs_async_offline",
            "gauge",
            "1 while the server cannot be reached and operations wait in the journal (async_writes).",
            Box::new(|v: &Value, m: &str| {
                (v["async_writes"].as_object().into_iter())
                    .map(|q| format!("{{mountpoint=\"{m}\"}} {}", u8::from(q.get("offline_since").is_some_and(|t| !t.is_null()))))
                    .collect()
            }),
        ),
        (
            "sftpfs_async_journal_bytes",
            "gauge",
            "Bytes of the journal's segments on local disk (async_writes).",
            queue("journal_bytes"),
        ),
        (
            "sftpfs_async_fdatasyncs_total",
            "counter",
            "fdatasyncs of the journal; operations_synced_total / this = operations per sync.",
            queue("fdatasyncs"),
        ),
        (
            "sftpfs_async_operations_synced_total",
            "counter",
            "Operations made durable in the journal (async_writes).",
            queue("operations_synced"),
        ),
        (
            "sftpfs_hashes_computed_total",
            "counter",
            "File hashes the server computed for this mount (xattrs, verify_writes, sftpfs verify).",
            hashes,
        ),
        (
            "sftpfs_verify_writes_total",
            "counter",
            "Closes of files written through the mount, by what the server's hash said (verify_writes).",
            verified,
        ),
        (
            "sftpfs_revalidation_requests_total",
            "counter",
            "SFTP requests background revalidation sent (revalidate=).",
            revalidation("requests"),
        ),
        (
            "sftpfs_revalidation_sent_bytes_total",
            "counter",
            "SFTP bytes background revalidation sent (revalidate=).",
            revalidation("bytes_out"),
        ),
        (
            "sftpfs_revalidation_received_bytes_total",
            "counter",
            "SFTP bytes background revalidation received (revalidate=).",
            revalidation("bytes_in"),
        ),
        (
            "sftpfs_cache_entries",
            "gauge",
            "Entries in a metadata cache.",
            per_cache("entries"),
        ),
        (
            "sftpfs_cache_bytes",
            "gauge",
            "Memory a metadata cache holds, estimated from its entries.",
            per_cache("bytes"),
        ),
        (
            "sftpfs_inodes",
            "gauge",
            "Nodes in the inode table: names the kernel holds and the directories above them.",
            gauge(&["inodes"]),
        ),
        (
            "sftpfs_cache_hits_total",
            "counter",
            "Lookups a metadata cache answered.",
            per_cache("hits"),
        ),
        (
            "sftpfs_cache_misses_total",
            "counter",
            "Lookups a metadata cache could not answer.",
            per_cache("misses"),
        ),
        (
            "sftpfs_errors_total",
            "counter",
            "Errors answered to programs, by errno.",
            Box::new(|v: &Value, m: &str| {
                v["errors"]["by_errno"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(e, n)| format!("{{mountpoint=\"{m}\",errno=\"{}\"}} {}", label(e), u(n)))
                    .collect()
            }),
        ),
    ];
    let mut o = String::new();
    for (name, kind, help, samples) in &metrics {
        let _ = writeln!(o, "# HELP {name} {help}");
        let _ = writeln!(o, "# TYPE {name} {kind}");
        for v in mounts {
            for sample in samples(v, &label(s(&v["mountpoint"]))) {
                let _ = writeln!(o, "{name}{sample}");
            }
        }
    }
    o
}

fn num(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        _ => "NaN".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Value {
        json!({
            "mountpoint": "/mnt/a \"b\"", "source": "u@h:/d", "transport": "ssh", "pid": 7,
            "uptime_seconds": 3725.0, "server": "server X, SFTP version 3",
            "connections": [
                {"member": 0, "state": "up", "rtt_seconds": 0.0004, "bytes_in": 2048,
                 "bytes_out": 100, "requests": 5, "requests_in_flight": 1, "reconnects": 0,
                 "round_trips": 4},
                {"member": 1, "state": "refused", "rtt_seconds": null, "bytes_in": 0,
                 "bytes_out": 0, "requests": 0, "requests_in_flight": 0, "reconnects": 0,
                 "round_trips": 0}
            ],
            "pool": {"idle_seconds": 60.0, "sessions_opened": 1, "closed_at_rest": 2,
                     "refused": {"time": 0.0, "count": 3, "reason": "connection refused"}},
            "open_files": 2, "unacknowledged_write_bytes": 0, "readahead_bytes": 0,
            "revalidation": {"period_seconds": 2.0, "requests": 12, "bytes_out": 600,
                             "bytes_in": 3072},
            "inodes": 12,
            "caches": {"attributes": {"entries": 3, "hits": 3, "misses": 1, "bytes": 420},
                       "listings": {"entries": 1, "hits": 0, "misses": 0, "bytes": 2048},
                       "links": {"entries": 0, "hits": 0, "misses": 0, "bytes": 0}},
            "errors": {"total": 1, "by_errno": {"EACCES": 1},
                       "recent": [{"time": 0.0, "op": "open", "path": "x/y", "errno": "EACCES"}]}
        })
    }

    #[test]
    fn text_shows_each_part() {
        let t = text(&sample());
        for want in [
            "up 1h 02m 05s",
            "#0 up",
            "rtt   0.4 ms",
            "in    2.0 KiB",
            "#1 refused",
            "connections: 1 up of 2 (one at rest; more for parallel work, closed after 1m 00s",
            "opened since mount 1, closed at rest 2",
            "the server refused another connection at",
            "(connection refused; 3 time(s) since mount): running with fewer",
            "writes not yet on the server: 0 B (all written)",
            "attributes 3 (75% hits, 420 B)",
            "listings 1 (- hits, 2.0 KiB)",
            "names the kernel holds: 12 inodes",
            "revalidation every 2 s: 12 requests, 600 B out, 3.0 KiB in since mount",
            "errors since mount: 1 (EACCES 1)",
            "open x/y: EACCES",
        ] {
            assert!(t.contains(want), "{want:?} missing from:\n{t}");
        }
    }

    #[test]
    fn prometheus_text_is_well_formed() {
        let p = prometheus(&[sample()]);
        assert!(p.contains("# TYPE sftpfs_connection_sent_bytes_total counter\n"));
        assert!(p.contains(
            "sftpfs_connection_received_bytes_total{mountpoint=\"/mnt/a \\\"b\\\"\",member=\"0\"} 2048\n"
        ));
        assert!(
            p.contains("sftpfs_connection_up{mountpoint=\"/mnt/a \\\"b\\\"\",member=\"1\"} 0\n")
        );
        // No sample for a member that has no round trip yet.
        assert_eq!(p.matches("sftpfs_connection_rtt_seconds{").count(), 1);
        assert!(
            p.contains("sftpfs_errors_total{mountpoint=\"/mnt/a \\\"b\\\"\",errno=\"EACCES\"} 1\n")
        );
        assert!(p.contains(
            "sftpfs_revalidation_received_bytes_total{mountpoint=\"/mnt/a \\\"b\\\"\"} 3072\n"
        ));
        // The queue only for a mount that has one.
        assert!(!p.contains("sftpfs_async_queued_operations{"));
        let mut with_queue = sample();
        with_queue["async_writes"] =
            json!({"queued_operations": 3, "queued_bytes": 4096, "failed_operations": 1});
        let q = prometheus(&[with_queue]);
        assert!(q.contains("sftpfs_async_queued_bytes{mountpoint=\"/mnt/a \\\"b\\\"\"} 4096\n"));
        assert!(q.contains("sftpfs_connection_round_trips_total{"));
        assert!(p.contains(
            "sftpfs_cache_bytes{mountpoint=\"/mnt/a \\\"b\\\"\",cache=\"listings\"} 2048\n"
        ));
        assert!(p.contains("sftpfs_inodes{mountpoint=\"/mnt/a \\\"b\\\"\"} 12\n"));
        for line in (p.lines().chain(q.lines())).filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(name.starts_with("sftpfs_") && name.ends_with('}'), "{line}");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
