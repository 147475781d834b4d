//! The tables of `compare`, as Markdown, and the "Side by side" section of BENCHMARKS.md.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use super::system::{unix_ms, KvMode};
use super::{
    max, median, Figures, Options, CHATTER, CHATTER_SEALED, CHATTER_TUNED, SERF, SERF_ENCRYPT,
};

/// One cell: a number (ratios are taken of numbers), a number shown with words, or words.
enum Cell {
    Num(f64, usize),
    NumText(f64, String),
    Text(String),
}

impl Cell {
    fn num(&self) -> Option<f64> {
        match self {
            Cell::Num(v, _) | Cell::NumText(v, _) if v.is_finite() => Some(*v),
            _ => None,
        }
    }

    fn show(&self) -> String {
        match self {
            Cell::Num(v, d) if v.is_finite() => format!("{v:.d$}", d = *d),
            Cell::Num(..) => "–".to_owned(),
            Cell::NumText(_, t) | Cell::Text(t) => t.clone(),
        }
    }
}

type Figs = BTreeMap<(usize, String), Figures>;

/// The (numerator, denominator) pairs of the ratio columns, among the systems that ran.
fn ratio_pairs(labels: &[String]) -> Vec<(String, String)> {
    let has = |l: &str| labels.iter().any(|x| x == l);
    let mut pairs = Vec::new();
    for (a, b) in [
        (CHATTER, SERF),
        (CHATTER, "chitchat"),
        (CHATTER_TUNED, SERF),
        // What encryption costs Chatter, and how it compares with Serf's.
        (CHATTER_SEALED, CHATTER),
        (CHATTER_SEALED, SERF_ENCRYPT),
    ] {
        if has(a) && has(b) {
            pairs.push((a.to_owned(), b.to_owned()));
        }
    }
    pairs
}

fn short(label: &str) -> &str {
    match label {
        CHATTER_TUNED => "Chatter-tuned",
        other => other,
    }
}

/// A table with one row per cluster size, per system the columns `subs`, then the ratios.
fn table(
    out: &mut String,
    sizes: &[usize],
    labels: &[String],
    figs: &Figs,
    subs: &[&str],
    cell: impl Fn(&Figures, usize) -> Cell,
) {
    let pairs = ratio_pairs(labels);
    let mut header = vec!["nodes".to_owned()];
    for l in labels {
        for s in subs {
            header.push(if s.is_empty() {
                l.clone()
            } else {
                format!("{l}: {s}")
            });
        }
    }
    for (a, b) in &pairs {
        for s in subs {
            let r = format!("{} / {}", short(a), b);
            header.push(if s.is_empty() { r } else { format!("{r}: {s}") });
        }
    }
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(
        out,
        "|{}",
        header.iter().map(|_| " ---: |").collect::<String>()
    );
    for &n in sizes {
        let mut row = vec![n.to_string()];
        let cells: BTreeMap<&str, Vec<Cell>> = labels
            .iter()
            .map(|l| {
                let cs = match figs.get(&(n, l.clone())) {
                    Some(f) if f.join_s.is_some() => (0..subs.len()).map(|k| cell(f, k)).collect(),
                    _ => (0..subs.len())
                        .map(|_| Cell::Text("did not start".into()))
                        .collect(),
                };
                (l.as_str(), cs)
            })
            .collect();
        for l in labels {
            for c in &cells[l.as_str()] {
                row.push(c.show());
            }
        }
        for (a, b) in &pairs {
            for (ca, cb) in cells[a.as_str()].iter().zip(&cells[b.as_str()]) {
                let r = match (ca.num(), cb.num()) {
                    (Some(x), Some(y)) if y > 0.0 => ratio(x / y),
                    _ => "–".to_owned(),
                };
                row.push(r);
            }
        }
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    let _ = writeln!(out);
}

/// The sentence on the encrypted columns, if any ran.
fn encryption_note(labels: &[String]) -> &'static str {
    if labels
        .iter()
        .any(|l| l == CHATTER_SEALED || l == SERF_ENCRYPT)
    {
        " Encrypted columns: \"Chatter sealed\" is `chatterd --encryption-mode sealed` with the \
         key in `CHATTER_GOSSIP_KEY` (XChaCha20-Poly1305, every datagram sealed, plain ones \
         refused); \"Serf -encrypt\" is `serf agent -encrypt KEY` (memberlist's AES-GCM, here \
         with a 32-byte key). Both use one key drawn from the OS for the run. Traffic counts \
         bytes on the wire, sealing overhead included."
    } else {
        ""
    }
}

/// A ratio with two significant digits below 0.1 (0.0046), two decimals above.
fn ratio(r: f64) -> String {
    if r >= 0.1 || r == 0.0 {
        format!("{r:.2}")
    } else {
        let digits = (-r.log10()).ceil() as usize + 1;
        format!("{r:.digits$}")
    }
}

fn date_utc() -> String {
    let secs = (unix_ms() / 1000.0) as i64;
    let days = secs.div_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    format!("{cores} cores ({cpu}), {mem_gib:.0} GiB, Linux {kernel}")
}

fn version(program: &Path, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn serf_package() -> String {
    let v = version(Path::new("dpkg-query"), &["-W", "-f", "${Version}", "serf"]);
    if v.is_empty() {
        "unknown".into()
    } else {
        v
    }
}

pub fn render(
    opts: &Options,
    labels: &[String],
    figs: &Figs,
    timing_note: &str,
    elapsed: Duration,
) -> String {
    let sizes = &opts.nodes;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "## Side by side: Chatter, Serf and chitchat (`chatter-bench compare`)\n"
    );
    let _ = writeln!(
        o,
        "```sh\ncargo build --release -p chatterd   # alone: with the chitchat node it would link \
         Tokio features it does not use\n\
         cargo build --release -p chatter-bench -p chatter-bench-chitchat\n\
         apt-get install -y serf\n{}\n```\n",
        opts.command_line
    );
    let _ = writeln!(
        o,
        "Measured {} on {}, in {:.0} min. Versions: {}; Serf {} (Debian package {}); \
         chitchat 0.13.0 (crates.io) in `chatter-bench-chitchat`. Every figure below comes \
         from that one run; ratios compare systems measured in it.\n",
        date_utc(),
        machine(),
        elapsed.as_secs_f64() / 60.0,
        version(&opts.chatterd, &["--version"]),
        version(&opts.serf, &["version"]),
        serf_package(),
    );
    let _ = writeln!(
        o,
        "How: for each size and each system in turn, the harness starts one cluster on \
         127.0.0.1 (the seed first, then all the others at once, each joining through the \
         seed), takes it through the scenarios below, and kills every process by PID before \
         the next system starts. Each system runs with its defaults: `chatterd` with no \
         timing flag (profile `lan`); `serf agent` with no config but `statsd_addr` \
         (profile `lan`); chitchat with `FailureDetectorConfig::default()` and the 1 s gossip \
         interval of `ChitchatConfig`'s default. Member tables are read through each \
         system's own interface: Chatter's HTTP API (`/v1/members`, SSE `/v1/events`), Serf's \
         RPC protocol (`members`, `stream`, `event`, `tags`: the protocol of the `serf` \
         command, without a process per call), and the chitchat node's standard input and \
         output. Serf's event handlers and RPC streams get member events only after Serf's \
         coalescing (3 s window, 1 s quiet period), so Serf's member status is polled instead \
         (every node about every 50 ms; a change is dated at the midpoint between the last \
         poll without it and the first with it). {timing_note}{}\n",
        encryption_note(labels)
    );

    let _ = writeln!(
        o,
        "### Join convergence\n\nSeconds from starting the N-1 joiners (process start \
         included) until every node lists all N alive (polled about every 50 ms per node).\n"
    );
    table(&mut o, sizes, labels, figs, &[""], |f, _| {
        Cell::Num(f.join_s.unwrap_or(f64::NAN), 2)
    });

    let _ = writeln!(
        o,
        "### SIGKILL detection\n\n{} kills per size (a different victim each time, never the \
         seed; restarted and rejoined before the next kill). Seconds from the `kill` until a \
         survivor lists the victim `failed` (chitchat: no longer live); median and max over \
         every survivor of every kill. Chatter's time is each survivor's own \
         `status_since_ms`; the chitchat node records when its live set changed; Serf's is \
         polled (see above).\n",
        opts.runs
    );
    table(&mut o, sizes, labels, figs, &["median", "max"], |f, k| {
        if f.detect_s.is_empty() && f.detect_missed == 0 {
            return Cell::Text("–".into());
        }
        let v = if k == 0 {
            median(&f.detect_s)
        } else {
            max(&f.detect_s)
        };
        if k == 1 && f.detect_missed > 0 {
            Cell::NumText(
                f64::NAN,
                format!("{} missed > {:.0} s", f.detect_missed, f.detect_limit_s),
            )
        } else {
            Cell::Num(v, 2)
        }
    });

    let _ = writeln!(
        o,
        "### Graceful leave\n\nOne node is stopped the system's documented graceful way \
         (chatterd: SIGTERM; Serf: SIGINT, as `leave_on_terminate` is off by default; \
         chitchat has no leave message: SIGTERM, the node stops gossiping). Seconds until \
         every survivor lists it `left` or `failed`, and how many said which.\n"
    );
    table(&mut o, sizes, labels, figs, &[""], |f, _| match &f.leave {
        Some(l) => {
            let how = if l.failed == 0 {
                format!("left {}/{}", l.left, l.survivors)
            } else if l.left == 0 {
                format!("failed {}/{}", l.failed, l.survivors)
            } else {
                format!("left {}, failed {} of {}", l.left, l.failed, l.survivors)
            };
            let t = if l.all_s.is_finite() {
                format!("{:.3} s", l.all_s)
            } else {
                "not all within 90 s".to_owned()
            };
            Cell::NumText(l.all_s, format!("{t}, {how}"))
        }
        None => Cell::Text("–".into()),
    });

    let _ = writeln!(
        o,
        "### Broadcast\n\n{} messages per size (after 3 warm-up ones), each from a different \
         node: Chatter `POST /v1/messages` (Plumtree), Serf a user event (RPC `event`, \
         `Coalesce: false`, as `serf event -coalesce=false`). Milliseconds from the request \
         until the last other node delivered it (its SSE stream or RPC stream, read by the \
         harness); median and max over the messages. chitchat has no broadcast.\n",
        opts.messages
    );
    table(&mut o, sizes, labels, figs, &["median", "max"], |f, k| {
        if f.bcast_na {
            return Cell::Text("n/a".into());
        }
        let v = if k == 0 {
            median(&f.bcast_all_ms)
        } else {
            max(&f.bcast_all_ms)
        };
        Cell::Num(v, 1)
    });

    let serf_kv = labels.iter().any(|l| l == SERF || l == SERF_ENCRYPT);
    let _ = writeln!(
        o,
        "### Key/value propagation\n\n{} writes per size, each on a different node: Chatter \
         `PUT /v1/kv/bench-key` (seen as `key-changed` on every SSE stream); chitchat \
         `set` on the node's own state (seen by a `subscribe_event` listener in each node, \
         which dates it); {}Milliseconds from the write until the last other node had the \
         value; median and max over the writes.\n",
        opts.messages,
        if serf_kv {
            "Serf has no key/value state: its nearest equivalent, the node's tags (RPC `tags`, \
             as `serf tags -set`), gossiped as a new `alive` message, polled with `members` on \
             every node (so dated to about ±10 ms). "
        } else {
            ""
        }
    );
    table(&mut o, sizes, labels, figs, &["median", "max"], |f, k| {
        if f.kv_mode.is_none() {
            return Cell::Text("n/a".into());
        }
        let v = if k == 0 {
            median(&f.kv_all_ms)
        } else {
            max(&f.kv_all_ms)
        };
        match f.kv_mode {
            Some(KvMode::Poll) => Cell::NumText(v, format!("{v:.1} (tags)")),
            _ => Cell::Num(v, 1),
        }
    });

    let _ = writeln!(
        o,
        "### SIGSTOP pauses\n\nOne node stopped with SIGSTOP for the given time, then SIGCONT; \
         every survivor polled every 100 ms from the stop until 5 s after the resume. \"no\": \
         nobody ever listed it `failed` (chitchat: dead); \"yes (k/m)\": k of m survivors did. \
         A different node for each pause length; the cluster reconverges between pauses.\n"
    );
    {
        let _ = writeln!(
            o,
            "| nodes | pause | {} |",
            labels
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let _ = writeln!(
            o,
            "| ---: | ---: |{}",
            labels.iter().map(|_| " --- |").collect::<String>()
        );
        for &n in sizes {
            for (k, p) in opts.pauses.iter().enumerate() {
                let mut row = vec![n.to_string(), format!("{p} s")];
                for l in labels {
                    let cell = figs
                        .get(&(n, l.clone()))
                        .and_then(|f| f.pauses.get(k))
                        .map(|&(_, c, s)| {
                            if c == 0 {
                                "no".to_owned()
                            } else {
                                format!("yes ({c}/{s})")
                            }
                        })
                        .unwrap_or_else(|| "–".to_owned());
                    row.push(cell);
                }
                let _ = writeln!(o, "| {} |", row.join(" | "));
            }
        }
        let _ = writeln!(o);
    }

    let _ = writeln!(
        o,
        "### Idle cost per node\n\nMeasured over {} s, starting {} s after convergence, \
         before any other scenario. CPU: user + system time from `/proc/PID/stat`, summed over \
         the nodes and divided by N (the mean per node: one node alone uses only a few 10 ms \
         clock ticks in the window); RSS from `/proc/PID/status` (median and max over the \
         nodes); traffic: median over the nodes.\n",
        opts.idle_seconds, opts.settle_seconds
    );
    table(
        &mut o,
        sizes,
        labels,
        figs,
        &["CPU %", "RSS MiB", "RSS max"],
        |f, k| match &f.idle {
            Some(i) => match k {
                0 => Cell::Num(i.cpu_pct, 3),
                1 => Cell::Num(i.rss_mib, 1),
                _ => Cell::Num(i.rss_max_mib, 1),
            },
            None => Cell::Text("–".into()),
        },
    );
    let _ = writeln!(
        o,
        "Traffic sent per node (payload bytes and datagrams, no IP/UDP headers). Chatter: the \
         daemon's own counters (`/v1/self`, UDP). Serf: its go-metrics sent to a statsd \
         listener of the harness (one per agent): the sum of `memberlist.udp.sent` and \
         `memberlist.tcp.sent` (push-pull over TCP) for bytes, the number of \
         `memberlist.udp.sent` samples (one per datagram) for datagrams. The statsd sink \
         itself costs Serf a little CPU. chitchat: a counting wrapper around chitchat's own \
         UDP socket in the node binary.\n"
    );
    table(
        &mut o,
        sizes,
        labels,
        figs,
        &["bytes/s", "datagrams/s"],
        |f, k| match &f.idle {
            Some(i) => match k {
                0 => Cell::Num(i.bytes_s, 1),
                _ => Cell::Num(i.packets_s, 2),
            },
            None => Cell::Text("–".into()),
        },
    );

    let errors: Vec<String> = figs
        .iter()
        .flat_map(|((n, l), f)| {
            f.errors
                .iter()
                .map(move |e| format!("- {l}, {n} nodes: {e}"))
        })
        .collect();
    if !errors.is_empty() {
        let _ = writeln!(o, "Errors in this run:\n\n{}\n", errors.join("\n"));
    }
    o
}

/// Replaces the "## Side by side" section of `path` (up to the next `## ` heading) with
/// `section`, or appends it.
pub fn update_doc(path: &Path, section: &str) -> Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let marker = "\n## Side by side";
    let new = match text.find(marker) {
        Some(start) => {
            let after = start + marker.len();
            let end = text[after..]
                .find("\n## ")
                .map(|e| after + e + 1)
                .unwrap_or(text.len());
            format!("{}{}{}", &text[..start + 1], section, &text[end..])
        }
        None => format!(
            "{}\n{}",
            text.trim_end_matches('\n').to_owned() + "\n",
            section
        ),
    };
    std::fs::write(path, new).with_context(|| format!("write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_chatter_is_compared_with_plain_chatter_and_encrypted_serf() {
        let labels: Vec<String> = [CHATTER, SERF, CHATTER_SEALED, SERF_ENCRYPT]
            .map(str::to_owned)
            .to_vec();
        let pairs = ratio_pairs(&labels);
        let has = |a: &str, b: &str| pairs.iter().any(|(x, y)| x == a && y == b);
        assert!(has(CHATTER, SERF));
        assert!(has(CHATTER_SEALED, CHATTER));
        assert!(has(CHATTER_SEALED, SERF_ENCRYPT));
        assert_eq!(pairs.len(), 3);
        // Without Serf -encrypt only the cost of sealing is shown.
        let pairs = ratio_pairs(&[CHATTER.to_owned(), CHATTER_SEALED.to_owned()]);
        assert_eq!(pairs, [(CHATTER_SEALED.to_owned(), CHATTER.to_owned())]);
        assert!(encryption_note(&[CHATTER.to_owned()]).is_empty());
        assert!(encryption_note(&labels).contains("-encrypt"));
    }
}
