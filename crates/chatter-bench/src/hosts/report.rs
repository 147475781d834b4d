//! The Markdown report of `chatter-bench hosts`: one table per scenario, the systems side by
//! side.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use super::scenarios::{Detect, Loss, Results, Window, TOLERATED_PAUSE_S};
use super::Options;
use crate::compare::system::node_name;
use crate::compare::{max, median};

fn secs(v: Option<f64>) -> String {
    match v {
        Some(s) if s.is_finite() => format!("{s:.2}"),
        _ => "–".to_owned(),
    }
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// A table: a header cell, then rows of (label, one cell per system).
fn table(out: &mut String, first: &str, labels: &[&str], rows: Vec<(String, Vec<String>)>) {
    let _ = writeln!(out, "| {first} | {} |", labels.join(" | "));
    let _ = writeln!(out, "|---|{}", "---:|".repeat(labels.len()));
    for (label, cells) in rows {
        let _ = writeln!(out, "| {label} | {} |", cells.join(" | "));
    }
    out.push('\n');
}

/// One row: `cell` of each system's results, "not run" where the scenario did not run.
fn row(
    label: &str,
    labels: &[&str],
    results: &BTreeMap<&str, Results>,
    cell: impl Fn(&Results) -> Option<String>,
) -> (String, Vec<String>) {
    (
        label.to_owned(),
        labels
            .iter()
            .map(|l| {
                results
                    .get(l)
                    .and_then(&cell)
                    .unwrap_or_else(|| "not run".to_owned())
            })
            .collect(),
    )
}

fn detect_rows(
    labels: &[&str],
    results: &BTreeMap<&str, Results>,
    pick: fn(&Results) -> Option<&Detect>,
) -> Vec<(String, Vec<String>)> {
    vec![
        row(
            "last survivor lists it failed: median over trials (s)",
            labels,
            results,
            |r| pick(r).map(|d| secs(finite(median(&d.last_s)))),
        ),
        row("last survivor: max over trials (s)", labels, results, |r| {
            pick(r).map(|d| secs(finite(max(&d.last_s))))
        }),
        row("each survivor: median (s)", labels, results, |r| {
            pick(r).map(|d| secs(finite(median(&d.each_s))))
        }),
        row("each survivor: max (s)", labels, results, |r| {
            pick(r).map(|d| secs(finite(max(&d.each_s))))
        }),
        row(
            "survivor x trial pairs that never listed it failed",
            labels,
            results,
            |r| pick(r).map(|d| format!("{} of {}", d.missed, d.pairs)),
        ),
        row(
            "undone: alive everywhere again, median (s)",
            labels,
            results,
            |r| pick(r).map(|d| secs(finite(median(&d.back_s)))),
        ),
    ]
}

fn window_rows(
    labels: &[&str],
    results: &BTreeMap<&str, Results>,
    pick: fn(&Results) -> Option<&Window>,
    allowed: Option<&str>,
) -> Vec<(String, Vec<String>)> {
    let mut rows = vec![row(
        "failed or left verdicts the rules forbid",
        labels,
        results,
        |r| pick(r).map(|w| verdicts(&w.false_verdicts)),
    )];
    if let Some(allowed) = allowed {
        rows.push(row(allowed, labels, results, |r| {
            pick(r).map(|w| w.allowed_verdicts.to_string())
        }));
    }
    rows.extend([
        row(
            "failed or left verdicts: all (again each time after alive)",
            labels,
            results,
            |r| pick(r).map(|w| w.verdict_count.to_string()),
        ),
        row(
            "status changes: most for one member in one view",
            labels,
            results,
            |r| pick(r).map(|w| w.max_changes.to_string()),
        ),
        row("status changes: total", labels, results, |r| {
            pick(r).map(|w| w.total_changes.to_string())
        }),
        row("member-table polls (unanswered)", labels, results, |r| {
            pick(r).map(|w| format!("{} ({})", w.polls, w.unanswered))
        }),
        row("undone: one cluster again (s)", labels, results, |r| {
            pick(r).map(|w| secs(w.back_s))
        }),
    ]);
    rows
}

fn loss_level(r: &Results, pct: f64) -> Option<&Loss> {
    r.loss.iter().find(|l| l.pct == pct)
}

fn loss_window(r: &Results, pct: f64) -> Option<&Window> {
    loss_level(r, pct).map(|l| &l.window)
}

/// The forbidden verdicts: their count, and the first few.
fn verdicts(v: &[String]) -> String {
    if v.is_empty() {
        return "0".to_owned();
    }
    let shown: Vec<&str> = v.iter().take(3).map(String::as_str).collect();
    let more = if v.len() > 3 { ", ..." } else { "" };
    format!("**{}** ({}{more})", v.len(), shown.join(", "))
}

pub fn render(
    opts: &Options,
    labels: &[&str],
    results: &BTreeMap<&str, Results>,
    data_dir: bool,
    elapsed: Duration,
) -> String {
    let n = opts.nodes;
    let mut out = String::new();
    let hosts = match &opts.containers {
        Some(image) => format!("containers of `{image}`"),
        None => "network namespaces".to_owned(),
    };
    let _ = writeln!(out, "### Real hosts: {n} {hosts} on one bridge\n");
    let _ = writeln!(
        out,
        "`{}` ({:.0} min). One daemon per host, each at its own address, each system with its \
         defaults; faults are made in the switch between the hosts (nftables on the bridge: a \
         cut host answers nothing, not even ICMP, as every host has permanent neighbour \
         entries), or to the processes (SIGKILL, SIGSTOP). Times are from the fault to the \
         node's own status change (Chatter's `status_since_ms`) or, where the system does not \
         say, the midpoint of the polls around it (Serf, 50 ms polls). Status changes count \
         every change of a member's status in a node's view, polled every 100 ms; Serf's member \
         table has no suspect state, so its changes are between alive, failed and left only.\n",
        opts.command_line,
        elapsed.as_secs_f64() / 60.0
    );
    let join = row("join: all see all alive (s)", labels, results, |r| {
        Some(secs(r.join_s))
    });
    table(&mut out, "cluster", labels, vec![join]);
    let ran = |s: &str| opts.scenarios.iter().any(|x| x == s);

    if ran("silent") {
        let _ = writeln!(
            out,
            "**Silent host loss** (the host's link cut, {} trials; victim restored and alive \
             everywhere before the next):\n",
            opts.runs
        );
        table(
            &mut out,
            "cut link",
            labels,
            detect_rows(labels, results, |r| r.silent.as_ref()),
        );
    }
    if ran("crash") {
        let _ = writeln!(
            out,
            "**Crash** (SIGKILL of the daemon, the host up: its kernel answers ICMP \
             port-unreachable; {} trials, restarted between):\n",
            opts.runs
        );
        table(
            &mut out,
            "SIGKILL",
            labels,
            detect_rows(labels, results, |r| r.crash.as_ref()),
        );
    }
    if ran("pause") {
        let _ = writeln!(
            out,
            "**Pause** (SIGSTOP, then SIGCONT; watched 5 s more; a pause of at most \
             {TOLERATED_PAUSE_S} s must never be failed):\n"
        );
        let rows = opts
            .pauses
            .iter()
            .map(|&p| {
                row(&format!("{p} s: listed failed by"), labels, results, |r| {
                    r.pause
                        .iter()
                        .find(|x| x.seconds == p)
                        .map(|x| format!("{} of {}", x.failed_by, x.survivors))
                })
            })
            .collect();
        table(&mut out, "pause", labels, rows);
    }
    if ran("partition") {
        let half = n / 2;
        let _ = writeln!(
            out,
            "**Partition** into {{{}}} and {{{}}}; a key written on one node of each side \
             during the cut (Serf: a tag):\n",
            (0..half).map(node_name).collect::<Vec<_>>().join(", "),
            (half..n).map(node_name).collect::<Vec<_>>().join(", ")
        );
        let rows = vec![
            row(
                "first side lists the other failed (s)",
                labels,
                results,
                |r| r.partition.as_ref().map(|p| secs(p.a_fails_b_s)),
            ),
            row(
                "second side lists the other failed (s)",
                labels,
                results,
                |r| r.partition.as_ref().map(|p| secs(p.b_fails_a_s)),
            ),
            row("nodes answering during the cut", labels, results, |r| {
                r.partition
                    .as_ref()
                    .map(|p| format!("{} of {}", p.answering, p.side_a.len() + p.side_b.len()))
            }),
            row("each key on its whole side (s)", labels, results, |r| {
                r.partition.as_ref().map(|p| secs(p.side_spread_s))
            }),
            row("healed: one cluster again (s)", labels, results, |r| {
                r.partition.as_ref().map(|p| secs(p.heal_s))
            }),
            row(
                "healed: both keys on every node (s)",
                labels,
                results,
                |r| {
                    r.partition.as_ref().map(|p| {
                        if p.kv {
                            secs(p.keys_s)
                        } else {
                            "n/a".to_owned()
                        }
                    })
                },
            ),
            row("key copies missing after healing", labels, results, |r| {
                r.partition.as_ref().map(|p| p.keys_missing.to_string())
            }),
        ];
        table(&mut out, "partition", labels, rows);
    }
    if ran("asymmetric") {
        let _ = writeln!(
            out,
            "**Asymmetric link** for {} s: n01 reaches n02, n02 does not reach n01 (only \
             these two may list each other failed):\n",
            opts.window_seconds
        );
        table(
            &mut out,
            "one-way link",
            labels,
            window_rows(
                labels,
                results,
                |r| r.asymmetric.as_ref(),
                Some("n01 and n02 listing each other failed"),
            ),
        );
    }
    if ran("flapping") {
        let _ = writeln!(
            out,
            "**Flapping link** for {} s: {}'s link down 2 s, up 3 s (an outage is a dead host \
             while it lasts: each observer may list the flapping host failed once, in the \
             first outage that got a verdict; no verdict may flap with the link, nobody else \
             may be listed failed):\n",
            opts.window_seconds,
            node_name(n - 1)
        );
        table(
            &mut out,
            "flapping",
            labels,
            window_rows(
                labels,
                results,
                |r| r.flapping.as_ref(),
                Some("verdicts allowed (the first outage, once per observer)"),
            ),
        );
    }
    if ran("loss") {
        let delay = results
            .values()
            .flat_map(|r| r.loss.iter())
            .any(|l| l.delay_applied);
        let _ = writeln!(
            out,
            "**Loss** on every link between hosts for {} s each{} (nobody may be listed failed \
             or left):\n",
            opts.seconds,
            if delay {
                format!(
                    ", with {} ms one-way delay ± {} ms uniform jitter per packet{} (the \
                     harness's NFQUEUE delay line in the switch)",
                    opts.delay.as_millis(),
                    opts.jitter.as_millis(),
                    opts.rtt_matrix.as_ref().map_or(String::new(), |p| format!(
                        ", the pairs of `{}` at half their RTT each way",
                        p.display()
                    ))
                )
            } else {
                ", without delay or jitter".to_owned()
            }
        );
        let mut rows = Vec::new();
        for &pct in &opts.losses {
            rows.push(row(
                &format!("{pct} %: forbidden verdicts"),
                labels,
                results,
                |r| loss_window(r, pct).map(|w| verdicts(&w.false_verdicts)),
            ));
            rows.push(row(
                &format!("{pct} %: status changes (most for one member in one view)"),
                labels,
                results,
                |r| loss_window(r, pct).map(|w| format!("{} ({})", w.total_changes, w.max_changes)),
            ));
            if delay {
                rows.push(row(
                    &format!("{pct} %: n00 → n01 mean RTT by ping, measured / configured (ms)"),
                    labels,
                    results,
                    |r| {
                        loss_level(r, pct).map(|l| {
                            let i = &l.impairment;
                            format!(
                                "{} / {:.1}",
                                i.rtt_with_ms.map_or("–".to_owned(), |v| format!("{v:.1}")),
                                i.rtt_expected_ms
                            )
                        })
                    },
                ));
                rows.push(row(
                    &format!("{pct} %: packets delayed (dropped by the delay line: queue or socket buffer full)"),
                    labels,
                    results,
                    |r| {
                        loss_level(r, pct)
                            .and_then(|l| l.delay_stats.as_ref())
                            .map(|d| format!("{} ({})", d.delayed, d.overflow_dropped))
                    },
                ));
            }
        }
        table(&mut out, "loss", labels, rows);
    }
    if ran("restart") {
        let _ = writeln!(
            out,
            "**Rolling restart** with `--data-dir` (each node in turn SIGKILLed and started \
             again at once; every node wrote one key before):\n"
        );
        if !data_dir {
            let _ = writeln!(
                out,
                "Skipped: {} has no `--data-dir`.\n",
                opts.chatterd.display()
            );
        } else {
            let rows = vec![
                row(
                    "back alive everywhere with its key: median (s)",
                    labels,
                    results,
                    |r| {
                        Some(match (&r.restart, &r.restart_skipped) {
                            (Some(x), _) => secs(finite(median(&x.back_s))),
                            (None, Some(why)) => why.clone(),
                            _ => "–".to_owned(),
                        })
                    },
                ),
                row("back: max (s)", labels, results, |r| {
                    r.restart.as_ref().map(|x| secs(finite(max(&x.back_s))))
                }),
                row("failed or left verdicts", labels, results, |r| {
                    r.restart.as_ref().map(|x| verdicts(&x.false_verdicts))
                }),
                row(
                    "key copies missing after the last restart",
                    labels,
                    results,
                    |r| {
                        r.restart
                            .as_ref()
                            .map(|x| format!("{} of {}", x.keys_missing, x.keys_total))
                    },
                ),
            ];
            table(&mut out, "restart", labels, rows);
        }
    }
    if let Some(d) = results
        .get(super::CHATTER)
        .and_then(|r| r.discover.as_ref())
    {
        d.markdown(&mut out);
    }
    for label in labels {
        let Some(r) = results.get(label) else {
            continue;
        };
        if let Some(f) = &r.fatal {
            let _ = writeln!(out, "{label}: the cluster failed: {f}\n");
        }
        for (s, e) in &r.errors {
            let _ = writeln!(out, "{label}, {s}: {e}\n");
        }
    }
    out
}
