//! Text output: the member table, the detail of one member, and the key/value table.
//!
//! Ages are computed from the daemon's own clock (`status_since_ms + age_ms` is the daemon's
//! "now"), so a skewed client clock does not distort them.

use std::fmt::Write;

use chatter_api::{
    CheckStatus, ChecksResponse, Encoding, EvidenceView, KeyOperationResponse, MemberView,
    NodeStateView, ServicesResponse, Status, SystemResponse,
};

/// The daemon's clock at response time, in Unix ms, if the member says.
fn daemon_now_ms(m: &MemberView) -> Option<u64> {
    m.age_ms.map(|age| m.status_since_ms.saturating_add(age))
}

/// "850ms", "12s", "3m12s", "2h05m", "3d04h".
pub fn human_duration(ms: u64) -> String {
    let secs = ms / 1000;
    match secs {
        0 => format!("{ms}ms"),
        1..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86_400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

fn ago(now_ms: Option<u64>, at_ms: u64) -> String {
    match now_ms {
        Some(now) => format!("{} ago", human_duration(now.saturating_sub(at_ms))),
        None => format!("at {at_ms} (unix ms)"),
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// The short explanation of a suspect or failed verdict for the table's WHY column.
pub fn why(m: &MemberView) -> String {
    let Some(e) = &m.evidence else {
        return match m.status {
            Status::Left => "left gracefully".to_owned(),
            _ => String::new(),
        };
    };
    let mut parts = Vec::new();
    match (&m.status, &e.declared_by) {
        (Status::Failed, Some(by)) if *by != e.accuser => {
            parts.push(format!("declared by {by}, suspected by {}", e.accuser));
        }
        (Status::Failed, Some(by)) => parts.push(format!("declared by {by}")),
        _ => parts.push(format!("suspected by {}", e.accuser)),
    }
    parts.push(plural(e.confirmations.len(), "confirmation"));
    if e.unreachable {
        parts.push("unreachable".to_owned());
    }
    if e.host_silent && e.flap_damped {
        parts.push("host silent (flap-damped)".to_owned());
    } else if e.host_silent {
        parts.push("host silent".to_owned());
    }
    parts.join(", ")
}

/// The aligned member table, with a summary line.
pub fn members_table(members: &[MemberView]) -> String {
    let headers = [
        "NAME",
        "ADDRESS",
        "STATUS",
        "INCARNATION",
        "RTT",
        "SINCE",
        "WHY",
    ];
    let rows: Vec<[String; 7]> = members
        .iter()
        .map(|m| {
            let name = if m.is_local {
                format!("{} (self)", m.name)
            } else {
                m.name.clone()
            };
            let rtt = match m.rtt_ms {
                Some(rtt) if rtt < 10.0 => format!("{rtt:.2}ms"),
                Some(rtt) => format!("{rtt:.0}ms"),
                None => "-".to_owned(),
            };
            let since = match m.age_ms {
                Some(age) => format!("{} ago", human_duration(age)),
                None => "-".to_owned(),
            };
            [
                name,
                m.addr.clone(),
                m.status.as_str().to_owned(),
                m.incarnation.to_string(),
                rtt,
                since,
                why(m),
            ]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<width$}  ", width = widths[i]);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&headers);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    let mut counts = Vec::new();
    for status in Status::ALL {
        let n = members.iter().filter(|m| m.status == status).count();
        if n > 0 {
            counts.push(format!("{n} {status}"));
        }
    }
    let seen_by = members
        .iter()
        .find(|m| m.is_local)
        .map(|m| format!(" (as seen by {})", m.name))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "\n{}: {}{seen_by}",
        plural(members.len(), "member"),
        if counts.is_empty() {
            "none".to_owned()
        } else {
            counts.join(", ")
        }
    );
    out
}

/// Everything known about one member, evidence included.
pub fn member_detail(m: &MemberView) -> String {
    let now = daemon_now_ms(m);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}{}",
        m.name,
        if m.is_local {
            " (the answering node)"
        } else {
            ""
        }
    );
    let mut field = |key: &str, value: String| {
        let _ = writeln!(out, "  {key:<13} {value}");
    };
    field("address", m.addr.clone());
    field(
        "status",
        match m.age_ms {
            Some(age) => format!("{} for {}", m.status, human_duration(age)),
            None => m.status.to_string(),
        },
    );
    field("incarnation", m.incarnation.to_string());
    field("generation", m.generation.to_string());
    field(
        "tags",
        if m.tags.is_empty() {
            "-".to_owned()
        } else {
            m.tags
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        },
    );
    field(
        "rtt",
        m.rtt_ms
            .map_or_else(|| "-".to_owned(), |rtt| format!("{rtt:.2}ms")),
    );
    field("last update", ago(now, m.last_update_ms));
    if let Some(c) = &m.conflict {
        field(
            "conflict",
            format!(
                "another process claims this name: {} (generation {}), seen {}",
                c.other_addr,
                c.other_generation,
                ago(now, c.seen_at_ms)
            ),
        );
    }
    if let Some(e) = &m.evidence {
        out.push_str(&evidence_detail(e, now));
    }
    out
}

fn evidence_detail(e: &EvidenceView, now: Option<u64>) -> String {
    let mut out = String::from("  evidence\n");
    let mut field = |key: &str, value: String| {
        let _ = writeln!(out, "    {key:<14} {value}");
    };
    field(
        "suspected by",
        format!("{}, {}", e.accuser, ago(now, e.suspected_at_ms)),
    );
    field(
        "confirmations",
        if e.confirmations.is_empty() {
            "none".to_owned()
        } else {
            e.confirmations
                .iter()
                .map(|c| format!("{} ({})", c.from, ago(now, c.at_ms)))
                .collect::<Vec<_>>()
                .join(", ")
        },
    );
    if e.probes.is_empty() {
        field("probes", "none by this node".to_owned());
    }
    for (i, p) in e.probes.iter().enumerate() {
        let via = match &p.via {
            Some(via) => format!("via {via}"),
            None => "direct".to_owned(),
        };
        field(
            if i == 0 { "probes" } else { "" },
            format!("{} {via}: {}", ago(now, p.at_ms), p.outcome),
        );
    }
    field(
        "unreachable",
        if e.unreachable {
            "yes (ICMP port unreachable: the process is gone)".to_owned()
        } else {
            "no".to_owned()
        },
    );
    field(
        "host silent",
        if e.host_silent && e.flap_damped {
            "yes, but flap-damped (it came back before in this life: full timeout)".to_owned()
        } else if e.host_silent {
            "yes (no answer to a host check: the host is gone or cut off)".to_owned()
        } else {
            "no".to_owned()
        },
    );
    field("timeout", human_duration(e.timeout_ms));
    if let Some(by) = &e.declared_by {
        let when = e
            .failed_at_ms
            .map(|at| format!(", {}", ago(now, at)))
            .unwrap_or_default();
        field("declared by", format!("{by}{when}"));
    }
    out
}

/// Longest value shown in the key/value table, in characters (`chatter kv get NODE KEY` or
/// `--json` show it whole).
const VALUE_WIDTH: usize = 60;

/// A value as one short line: control characters escaped, cut at [`VALUE_WIDTH`] with `...`.
fn short_value(value: &str, encoding: Option<Encoding>) -> String {
    let mut text = match encoding {
        Some(Encoding::Base64) => format!("base64:{value}"),
        None => value
            .chars()
            .flat_map(char::escape_debug)
            .collect::<String>(),
    };
    if text.chars().count() > VALUE_WIDTH {
        text = text.chars().take(VALUE_WIDTH - 3).collect::<String>() + "...";
    }
    text
}

/// Lines of cells aligned in columns (the last column unpadded).
fn aligned(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            let _ = write!(text, "{cell:<width$}  ", width = widths[i]);
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// The key/value table: one row per key, with its node and the node's status, and a summary.
pub fn kv_table(states: &[NodeStateView]) -> String {
    let rows: Vec<Vec<String>> = states
        .iter()
        .flat_map(|state| {
            state.entries.iter().map(move |entry| {
                vec![
                    state.node.clone(),
                    state.status.as_str().to_owned(),
                    entry.key.clone(),
                    entry.version.to_string(),
                    short_value(&entry.value, entry.encoding),
                ]
            })
        })
        .collect();
    let mut out = aligned(&["NODE", "STATUS", "KEY", "VERSION", "VALUE"], &rows);
    let with_keys = states.iter().filter(|s| !s.entries.is_empty()).count();
    let _ = writeln!(
        out,
        "\n{} on {} of {}",
        plural(rows.len(), "key"),
        with_keys,
        plural(states.len(), "node")
    );
    out
}

/// "16.0G", "512M", "900K", "12B".
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["K", "M", "G", "T", "P"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}

/// A node name, with its status when it is not alive: `demo-3 (failed)`.
fn node_with_status(node: &str, status: Status) -> String {
    if status == Status::Alive {
        node.to_owned()
    } else {
        format!("{node} ({status})")
    }
}

/// The checks table: NODE CHECK STATUS SINCE OUTPUT, and a summary.
pub fn checks_table(response: &ChecksResponse) -> String {
    let checks = &response.checks;
    let now = Some(response.now_ms).filter(|&n| n > 0);
    let rows: Vec<Vec<String>> = checks
        .iter()
        .map(|c| {
            vec![
                node_with_status(&c.node, c.node_status),
                c.name.clone(),
                c.status.as_str().to_owned(),
                if c.since_ms == 0 {
                    "-".to_owned()
                } else {
                    match now {
                        Some(now) => human_duration(now.saturating_sub(c.since_ms)),
                        None => format!("at {}", c.since_ms),
                    }
                },
                short_value(&c.output, None),
            ]
        })
        .collect();
    let mut out = aligned(&["NODE", "CHECK", "STATUS", "FOR", "OUTPUT"], &rows);
    let mut counts = Vec::new();
    for status in CheckStatus::ALL {
        let n = checks.iter().filter(|c| c.status == status).count();
        if n > 0 {
            counts.push(format!("{n} {status}"));
        }
    }
    let nodes: std::collections::BTreeSet<&str> = checks.iter().map(|c| c.node.as_str()).collect();
    let _ = writeln!(
        out,
        "\n{} on {}: {}",
        plural(checks.len(), "check"),
        plural(nodes.len(), "node"),
        if counts.is_empty() {
            "none".to_owned()
        } else {
            counts.join(", ")
        }
    );
    out
}

/// The services table: TYPE SHARD LIVE INSTANCES, instances on nodes that are not alive marked
/// with their status.
pub fn services_table(response: &ServicesResponse) -> String {
    let rows: Vec<Vec<String>> = response
        .services
        .iter()
        .flat_map(|service| {
            service.shards.iter().map(move |shard| {
                let instances: Vec<String> = shard
                    .instances
                    .iter()
                    .map(|i| node_with_status(&i.node, i.status))
                    .collect();
                vec![
                    service.kind.clone(),
                    shard.shard.clone().unwrap_or_else(|| "-".to_owned()),
                    format!("{}/{}", shard.live, shard.instances.len()),
                    instances.join(", "),
                ]
            })
        })
        .collect();
    let mut out = aligned(&["TYPE", "SHARD", "LIVE", "INSTANCES"], &rows);
    let unserved = response
        .services
        .iter()
        .flat_map(|s| s.shards.iter().map(move |shard| (s, shard)))
        .filter(|(_, shard)| shard.live == 0)
        .count();
    let _ = writeln!(
        out,
        "\n{}{}",
        plural(response.services.len(), "service type"),
        if unserved > 0 {
            format!(", {} without a live instance", plural(unserved, "shard"))
        } else {
            String::new()
        }
    );
    out
}

/// The system table: NODE LOAD CPU MEMORY DISK UPTIME VERSION.
pub fn system_table(response: &SystemResponse) -> String {
    let dash = || "-".to_owned();
    let usage = |u: Option<chatter_api::Usage>| {
        u.map_or_else(dash, |u| {
            format!("{:.0}% of {}", u.percent(), human_bytes(u.total))
        })
    };
    let rows: Vec<Vec<String>> = response
        .nodes
        .iter()
        .map(|n| {
            let s = &n.system;
            vec![
                node_with_status(&n.node, n.status),
                s.load
                    .map_or_else(dash, |[a, b, c]| format!("{a:.2} {b:.2} {c:.2}")),
                s.cpu_percent.map_or_else(dash, |c| format!("{c:.0}%")),
                s.cores.map_or_else(dash, |c| c.to_string()),
                usage(s.memory),
                usage(s.disk),
                n.uptime_s
                    .map_or_else(dash, |up| human_duration(up.saturating_mul(1000))),
                s.version.clone().unwrap_or_else(dash),
            ]
        })
        .collect();
    let mut out = aligned(
        &[
            "NODE", "LOAD", "CPU", "CORES", "MEMORY", "DISK", "UPTIME", "VERSION",
        ],
        &rows,
    );
    let _ = writeln!(out, "\n{}", plural(response.nodes.len(), "node"));
    out
}

/// The report of a key operation: the keys across the cluster, then who acknowledged, who
/// refused and why, who stayed silent and who was down.
pub fn key_report(r: &KeyOperationResponse) -> String {
    let mut out = String::new();
    let _ = match &r.fingerprint {
        Some(fp) => writeln!(out, "{} {fp}", r.operation),
        None => writeln!(out, "{}", r.operation),
    };
    let rows: Vec<Vec<String>> = r
        .keys
        .iter()
        .map(|k| {
            vec![
                k.fingerprint.clone(),
                k.nodes.to_string(),
                k.primary_on.to_string(),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&aligned(&["KEY", "NODES", "PRIMARY ON"], &rows));
    out.push('\n');
    let names = |answers: &[chatter_api::KeyNodeAnswer]| {
        answers
            .iter()
            .map(|a| a.node.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(
        out,
        "acknowledged ({}): {}",
        r.acknowledged.len(),
        names(&r.acknowledged)
    );
    for refused in &r.refused {
        let _ = writeln!(
            out,
            "refused: {} ({})",
            refused.node,
            refused.refused.as_deref().unwrap_or("no reason given")
        );
    }
    if !r.silent.is_empty() {
        let _ = writeln!(
            out,
            "silent ({}, alive but did not answer): {}",
            r.silent.len(),
            r.silent.join(", ")
        );
    }
    if !r.not_reached.is_empty() {
        let _ = writeln!(
            out,
            "not reached ({}, down: give them the new keyring file by hand): {}",
            r.not_reached.len(),
            r.not_reached.join(", ")
        );
    }
    if let Some(warning) = &r.warning {
        let _ = writeln!(out, "warning: {warning}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatter_api::{ConfirmationView, KvEntry};

    #[test]
    fn kv_table_escapes_and_cuts_values() {
        let states = vec![
            NodeStateView {
                node: "n1".into(),
                status: Status::Alive,
                generation: 1,
                version: 3,
                entries: vec![
                    KvEntry::new("role", b"web\nfront", 1),
                    KvEntry::new("blob", &[0xff, 0xfe], 2),
                    KvEntry::new("long", "x".repeat(100).as_bytes(), 3),
                ],
            },
            NodeStateView {
                node: "n2".into(),
                status: Status::Failed,
                generation: 1,
                version: 0,
                entries: vec![],
            },
        ];
        let table = kv_table(&states);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "NODE  STATUS  KEY   VERSION  VALUE");
        assert!(lines[1].ends_with("web\\nfront"), "{table}");
        assert!(lines[2].ends_with("base64://4="), "{table}");
        assert!(
            lines[3].ends_with(&format!("{}...", "x".repeat(57))),
            "{table}"
        );
        assert!(table.contains("3 keys on 1 of 2 nodes"), "{table}");
    }

    fn member(name: &str, status: Status) -> MemberView {
        MemberView {
            name: name.into(),
            addr: "127.0.0.1:2428".into(),
            status,
            incarnation: 1,
            generation: 7,
            tags: Default::default(),
            status_since_ms: 1_000_000,
            last_update_ms: 1_000_000,
            age_ms: Some(12_000),
            rtt_ms: Some(0.5),
            evidence: None,
            conflict: None,
            is_local: false,
        }
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(human_duration(850), "850ms");
        assert_eq!(human_duration(12_500), "12s");
        assert_eq!(human_duration(192_000), "3m12s");
        assert_eq!(human_duration(7_500_000), "2h05m");
        assert_eq!(human_duration(100_000_000), "1d03h");
    }

    #[test]
    fn why_names_the_accuser_and_the_evidence() {
        let mut m = member("n1", Status::Failed);
        m.evidence = Some(EvidenceView {
            accuser: "n3".into(),
            suspected_at_ms: 990_000,
            confirmations: vec![
                ConfirmationView {
                    from: "n2".into(),
                    at_ms: 991_000,
                },
                ConfirmationView {
                    from: "n4".into(),
                    at_ms: 991_000,
                },
            ],
            probes: vec![],
            unreachable: true,
            host_silent: false,
            flap_damped: false,
            timeout_ms: 1000,
            declared_by: Some("n3".into()),
            failed_at_ms: Some(1_000_000),
        });
        assert_eq!(why(&m), "declared by n3, 2 confirmations, unreachable");
        m.status = Status::Suspect;
        assert_eq!(why(&m), "suspected by n3, 2 confirmations, unreachable");
        let detail = member_detail(&m);
        assert!(detail.contains("suspected by   n3, 22s ago"), "{detail}");
    }

    #[test]
    fn table_is_aligned() {
        let mut me = member("a-long-name", Status::Alive);
        me.is_local = true;
        let table = members_table(&[me, member("b", Status::Left)]);
        let lines: Vec<&str> = table.lines().collect();
        let col = lines[0].find("ADDRESS").unwrap();
        assert_eq!(lines[1].find("127.0.0.1").unwrap(), col);
        assert_eq!(lines[2].find("127.0.0.1").unwrap(), col);
        assert!(table.contains("2 members: 1 alive, 1 left (as seen by a-long-name)"));
    }
}
