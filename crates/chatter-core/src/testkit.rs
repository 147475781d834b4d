//! A tiny perfect-network harness for the core's own unit tests: instant delivery, time in
//! 10 ms steps, per-node "crashed" switch that answers with ICMP port-unreachable, host checks
//! answered at once (`Answered` unless the host is marked silent to them).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::{Config, Event, HostAnswer, Identity, Member, MemberStatus, Node};

pub(crate) struct Net {
    pub(crate) now: Instant,
    pub(crate) nodes: Vec<Node>,
    pub(crate) crashed: Vec<bool>,
    /// Nodes that answer no datagram (no ICMP either): a stalled process, or with
    /// `host_silent` a host that is gone.
    pub(crate) silent: Vec<bool>,
    /// Nodes whose link is cut: they keep running, but every datagram to or from them
    /// vanishes (no ICMP).
    pub(crate) cut: Vec<bool>,
    /// Hosts that answer no host check (a dead host, or a firewall dropping SYNs to it);
    /// the others answer every check at once.
    pub(crate) host_silent: Vec<bool>,
    pub(crate) events: Vec<(usize, Event)>,
    /// When set, every datagram handed to a live node is recorded: (sender, destination,
    /// payload as sent).
    pub(crate) tap: Option<Vec<(usize, usize, Vec<u8>)>>,
}

pub(crate) fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i as u8 + 1], 7000))
}

impl Net {
    pub(crate) fn new(n: usize, config: Config) -> Self {
        Self::with_setup(n, config, |_, _| {})
    }

    /// Like [`Net::new`], with `setup` run on each node before it joins.
    pub(crate) fn with_setup(
        n: usize,
        config: Config,
        setup: impl FnMut(usize, &mut Node),
    ) -> Self {
        Self::with_hosts(n, config, &[], setup)
    }

    /// Like [`Net::new`], with the hosts `firewalled` silent to host checks from the start
    /// (before anyone joins and calibrates their paths).
    pub(crate) fn with_firewalled(n: usize, config: Config, firewalled: &[usize]) -> Self {
        Self::with_hosts(n, config, firewalled, |_, _| {})
    }

    fn with_hosts(
        n: usize,
        config: Config,
        firewalled: &[usize],
        mut setup: impl FnMut(usize, &mut Node),
    ) -> Self {
        let now = Instant::now();
        let mut nodes: Vec<Node> = (0..n)
            .map(|i| {
                Node::new(
                    Identity::new(format!("n{i}"), addr(i), 1),
                    config.clone(),
                    i as u64,
                    now,
                )
                .unwrap()
            })
            .collect();
        for (i, node) in nodes.iter_mut().enumerate() {
            setup(i, node);
        }
        for node in nodes.iter_mut().skip(1) {
            node.join(now, vec![addr(0)]);
        }
        let mut net = Self {
            now,
            nodes,
            crashed: vec![false; n],
            silent: vec![false; n],
            cut: vec![false; n],
            host_silent: (0..n).map(|i| firewalled.contains(&i)).collect(),
            events: Vec::new(),
            tap: None,
        };
        net.flush();
        net
    }

    /// Whether node `i`'s link is cut (nodes pushed by a test after `new` never are).
    fn is_cut(&self, i: usize) -> bool {
        self.cut.get(i).copied().unwrap_or(false)
    }

    fn index_of(&self, a: SocketAddr) -> Option<usize> {
        self.nodes.iter().position(|n| n.local_addr() == a)
    }

    /// Delivers datagrams until none are left.
    pub(crate) fn flush(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                if self.crashed[i] || self.silent[i] {
                    while self.nodes[i].poll_transmit().is_some() {}
                    continue;
                }
                while let Some(e) = self.nodes[i].poll_event() {
                    self.events.push((i, e));
                }
                while let Some(check) = self.nodes[i].poll_host_check() {
                    moved = true;
                    let answer = match self.index_of(check.addr) {
                        // A cut link carries no host check either way.
                        Some(j) if !self.host_silent[j] && !self.is_cut(i) && !self.is_cut(j) => {
                            HostAnswer::Answered
                        }
                        _ => HostAnswer::Silent,
                    };
                    let now = self.now;
                    self.nodes[i].handle_host_check(now, check.id, answer);
                }
                while let Some(t) = self.nodes[i].poll_transmit() {
                    moved = true;
                    match self.index_of(t.dst) {
                        Some(j) if self.silent[j] || self.is_cut(i) || self.is_cut(j) => {}
                        Some(j) if self.crashed[j] => {
                            let now = self.now;
                            self.nodes[i].handle_unreachable(now, t.dst)
                        }
                        Some(j) => {
                            if let Some(tap) = &mut self.tap {
                                tap.push((i, j, t.payload.clone()));
                            }
                            let (now, from) = (self.now, self.nodes[i].local_addr());
                            self.nodes[j].handle_datagram(now, from, &t.payload)
                        }
                        None => {}
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("datagrams keep flowing: a message loop");
    }

    pub(crate) fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += Duration::from_millis(10);
            for i in 0..self.nodes.len() {
                if !self.crashed[i] && !self.silent[i] {
                    let now = self.now;
                    self.nodes[i].handle_timeout(now);
                }
            }
            self.flush();
        }
    }

    /// Runs until `cond` holds, or panics after `limit` of virtual time.
    pub(crate) fn run_until(
        &mut self,
        limit: Duration,
        mut cond: impl FnMut(&Net) -> bool,
    ) -> Duration {
        let start = self.now;
        while !cond(self) {
            assert!(
                self.now - start < limit,
                "condition not reached within {limit:?}"
            );
            self.run_for(Duration::from_millis(10));
        }
        self.now - start
    }

    pub(crate) fn status(&self, observer: usize, subject: usize) -> Option<MemberStatus> {
        self.nodes[observer]
            .member_brief(&format!("n{subject}"))
            .map(|m| m.status)
    }

    pub(crate) fn member(&self, observer: usize, subject: usize) -> Member {
        self.nodes[observer].member(&format!("n{subject}")).unwrap()
    }

    pub(crate) fn all_see_alive(&self) -> bool {
        let n = self.nodes.len();
        (0..n).all(|i| {
            self.crashed[i]
                || self.silent[i]
                || (0..n).all(|j| {
                    i == j
                        || self.crashed[j]
                        || self.silent[j]
                        || self.status(i, j) == Some(MemberStatus::Alive)
                })
        })
    }
}
