//! A delay line in user space for the hosts' bridge, for kernels without `sch_netem`.
//!
//! The switch namespace sends the IPv4 packets crossing its bridge between two hosts through
//! iptables' `FORWARD` chain (`bridge-nf-call-iptables`, set in that namespace only) to an
//! NFQUEUE ([`QUEUE_NUM`]); see `Topology::start_delay`. A thread of the harness enters the
//! switch namespace (`setns`, so its netlink socket belongs to that namespace's queue), takes
//! each packet, holds it for its delay and then gives the kernel the ACCEPT verdict. Verdicts
//! may come out of order (nfqueue allows it), so a packet with a short delay overtakes one with
//! a long delay, as with netem.
//!
//! The delay of a packet from host `a` to host `b` is the link's base one-way delay (half the
//! pair's RTT from an [`RttMatrix`], else [`DelaySpec::delay`]) plus a jitter drawn uniformly
//! in `[-jitter, +jitter]` from a seeded RNG, clamped at zero: netem's `delay D J` without a
//! distribution table, which is the reference.
//!
//! Bounds: the kernel holds every queued packet until its verdict, and the queue is limited to
//! [`MAX_HELD`] packets; past that the kernel drops new packets (no fail-open: an overflowing
//! router buffer loses packets too). A burst faster than the thread reads is also bounded by
//! the netlink socket's receive buffer (the kernel's default, about 1,000 queued packets; a
//! namespace other than the first cannot raise it): the kernel drops what does not fit there
//! too. Both drops are counted by the kernel (`/proc/net/netfilter/nfnetlink_queue`, per
//! namespace) and returned in [`DelayStats`], so a run reports them as extra loss rather than
//! hiding them (a 5-node cluster sends tens of packets per second; a flood of 12,000 UDP
//! datagrams in 0.4 s lost 10,569 this way, all counted). The rule has `--queue-bypass`: if
//! the thread is gone (its socket closed), packets pass undelayed rather than vanish.
//!
//! Loss stays in nftables (the `impair` chain of the switch's bridge table): one place for
//! every drop the harness makes on purpose, with the kernel's own random numbers.

use std::collections::{BTreeMap, BinaryHeap};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The NFQUEUE number the switch's rule sends packets to (one queue per switch namespace, so
/// a fixed number does not collide with other runs: each has its own namespace).
pub const QUEUE_NUM: u16 = 0;
/// Most packets held at once (the kernel's queue length). At 5 hosts a gossip cluster sends a
/// few hundred packets per second; even a 1 s delay holds well under this. 8,192 packets of at
/// most 1,500 bytes bound the kernel memory at about 12 MiB.
pub const MAX_HELD: u32 = 8192;
/// Bytes of each packet copied to the thread: the IPv4 header's addresses are all it reads.
const COPY_RANGE: u16 = 64;
/// Longest wait between two looks at the socket: the `nfq` crate offers non-blocking receive
/// but not its descriptor for `poll`, so the thread sleeps this long at most, which is also the
/// most a verdict can be late (plus scheduling).
const TICK: Duration = Duration::from_millis(1);
/// Packets read per turn before due verdicts are given again, so a burst cannot delay them.
const BATCH: usize = 256;
/// Consecutive socket errors after which the thread gives up (the rule's bypass then lets
/// packets through undelayed; the stats say so).
const MAX_ERRORS_IN_A_ROW: u32 = 1000;
/// Largest RTT a matrix may give a pair: beyond it the link is a partition, not a delay.
const MAX_RTT: Duration = Duration::from_secs(10);
/// Largest RTT matrix file read.
const MAX_MATRIX_BYTES: u64 = 1 << 20;

/// Per-pair RTTs between hosts (by index), read from a file of lines `A B RTT_MS` (`#` starts
/// a comment); symmetric: the one-way delay each way is half the RTT.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RttMatrix {
    rtt: BTreeMap<(usize, usize), Duration>,
}

impl RttMatrix {
    /// Parses the text of a matrix for `hosts` hosts; every error names its line.
    pub fn parse(text: &str, hosts: usize) -> Result<RttMatrix> {
        let mut rtt = BTreeMap::new();
        for (k, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            let [a, b, ms] = words[..] else {
                bail!("line {}: want `A B RTT_MS`, got {line:?}", k + 1);
            };
            let host = |w: &str| -> Result<usize> {
                let i: usize = w
                    .parse()
                    .map_err(|_| anyhow!("line {}: {w:?} is not a host index", k + 1))?;
                if i >= hosts {
                    bail!("line {}: host {i} of {hosts} hosts", k + 1);
                }
                Ok(i)
            };
            let (a, b) = (host(a)?, host(b)?);
            if a == b {
                bail!("line {}: a host has no link to itself", k + 1);
            }
            let ms: f64 = ms
                .parse()
                .map_err(|_| anyhow!("line {}: {ms:?} is not a number of ms", k + 1))?;
            if !ms.is_finite() || ms < 0.0 || ms > MAX_RTT.as_secs_f64() * 1000.0 {
                bail!("line {}: RTT {ms} ms outside 0..={MAX_RTT:?}", k + 1);
            }
            rtt.insert((a.min(b), a.max(b)), Duration::from_secs_f64(ms / 1000.0));
        }
        Ok(RttMatrix { rtt })
    }

    /// Reads and parses a matrix file (at most [`MAX_MATRIX_BYTES`]).
    pub fn read(path: &std::path::Path, hosts: usize) -> Result<RttMatrix> {
        let len = std::fs::metadata(path)
            .with_context(|| format!("{}", path.display()))?
            .len();
        if len > MAX_MATRIX_BYTES {
            bail!(
                "{}: {len} bytes, at most {MAX_MATRIX_BYTES}",
                path.display()
            );
        }
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        RttMatrix::parse(&text, hosts).with_context(|| format!("{}", path.display()))
    }

    /// The configured RTT between `a` and `b`, if the matrix lists the pair.
    pub fn rtt(&self, a: usize, b: usize) -> Option<Duration> {
        self.rtt.get(&(a.min(b), a.max(b))).copied()
    }

    /// Pairs listed.
    pub fn len(&self) -> usize {
        self.rtt.len()
    }
}

/// Parses a duration of the command line: `20ms`, `1.5s`, `500us`, or a bare number of ms;
/// at most [`MAX_RTT`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else {
        (t, 1e-3)
    };
    let v: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: want a duration such as 20ms or 0.5s"))?;
    let secs = v * scale;
    if !secs.is_finite() || secs < 0.0 || secs > MAX_RTT.as_secs_f64() {
        return Err(format!("{text:?}: between 0 and {MAX_RTT:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// What the delay line does to each packet between two hosts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DelaySpec {
    /// One-way delay of every link the matrix does not list.
    pub delay: Duration,
    /// Half-width of the uniform jitter added to each packet's delay.
    pub jitter: Duration,
    /// Per-pair RTTs, overriding `delay` for the pairs listed.
    pub matrix: RttMatrix,
}

impl DelaySpec {
    /// The base one-way delay from host `from` to host `to` (`None`: not a host).
    pub fn base(&self, from: Option<usize>, to: Option<usize>) -> Duration {
        match (from, to) {
            (Some(a), Some(b)) => self.matrix.rtt(a, b).map_or(self.delay, |rtt| rtt / 2),
            _ => self.delay,
        }
    }

    /// One packet's delay: the base plus uniform jitter, never negative (netem's `delay D J`).
    pub fn sample(&self, rng: &mut impl Rng, from: Option<usize>, to: Option<usize>) -> Duration {
        let base = self.base(from, to).as_secs_f64();
        let j = self.jitter.as_secs_f64();
        let d = if j > 0.0 {
            base + rng.random_range(-j..=j)
        } else {
            base
        };
        Duration::from_secs_f64(d.max(0.0))
    }

    /// The mean RTT between `a` and `b` this spec gives (two independent one-way delays),
    /// estimated from `samples` draws of a fixed seed.
    pub fn mean_rtt(&self, a: usize, b: usize, samples: u32) -> Duration {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let total: Duration = (0..samples.max(1))
            .map(|_| {
                self.sample(&mut rng, Some(a), Some(b)) + self.sample(&mut rng, Some(b), Some(a))
            })
            .sum();
        total / samples.max(1)
    }

    /// Whether this spec delays anything.
    pub fn is_zero(&self) -> bool {
        self.delay.is_zero() && self.jitter.is_zero() && self.matrix.len() == 0
    }
}

/// What the delay line did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DelayStats {
    /// Packets held and then accepted.
    pub delayed: u64,
    /// Most packets held at once.
    pub max_held: usize,
    /// Packets the kernel dropped because the queue was full or the socket's receive buffer
    /// was (`queue_dropped` + `queue_user_dropped`): loss on top of the configured loss.
    pub overflow_dropped: u64,
    /// Largest lateness of a verdict past its due time.
    pub late_max: Duration,
    /// Socket errors (receive or verdict).
    pub errors: u64,
}

/// Maps a packet's address to a host index (`None`: not a host, e.g. the harness).
pub type HostOf = fn(Ipv4Addr, [u8; 3]) -> Option<usize>;

/// A running delay line; [`DelayLine::stop`] (or drop) releases every held packet.
pub struct DelayLine {
    spec: Arc<Mutex<DelaySpec>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<DelayStats>>>,
}

impl DelayLine {
    /// Starts the thread in network namespace `netns` (a name under `/run/netns`) and binds
    /// the queue; returns once the queue is bound, so packets the rule sends are taken.
    pub fn start(
        netns: &str,
        spec: DelaySpec,
        seed: u64,
        subnet: [u8; 3],
        host_of: HostOf,
    ) -> Result<DelayLine> {
        let ns = std::fs::File::open(format!("/run/netns/{netns}"))
            .with_context(|| format!("open namespace {netns}"))?;
        let spec = Arc::new(Mutex::new(spec));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
        let thread = {
            let spec = Arc::clone(&spec);
            let stop = Arc::clone(&stop);
            thread::Builder::new()
                .name("delay-line".to_owned())
                .spawn(move || -> Result<DelayStats> {
                    // SAFETY: setns(2) on an open namespace file; it changes only this
                    // thread's network namespace.
                    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        let e = anyhow!(std::io::Error::last_os_error()).context("setns");
                        let _ = ready_tx.send(Err(anyhow!("{e:#}")));
                        return Err(e);
                    }
                    drop(ns);
                    let mut queue = match open_queue() {
                        Ok(q) => q,
                        Err(e) => {
                            let _ = ready_tx.send(Err(anyhow!("{e:#}")));
                            return Err(e);
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    let mut rng = ChaCha8Rng::seed_from_u64(seed);
                    let stats = serve(&mut queue, &spec, &stop, &mut rng, subnet, host_of);
                    let _ = queue.unbind(QUEUE_NUM);
                    stats
                })
                .context("spawn the delay line")?
        };
        let mut line = DelayLine {
            spec,
            stop,
            thread: Some(thread),
        };
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(line),
            Ok(Err(e)) => {
                let _ = line.finish();
                Err(e.context("delay line"))
            }
            Err(_) => {
                let _ = line.finish();
                bail!("delay line: the queue was not bound within 10 s")
            }
        }
    }

    /// Changes the delays of the packets that arrive from now on.
    pub fn update(&self, spec: DelaySpec) {
        match self.spec.lock() {
            Ok(mut s) => *s = spec,
            Err(poisoned) => *poisoned.into_inner() = spec,
        }
    }

    /// Releases every held packet, closes the queue and returns what the line did.
    pub fn stop(mut self) -> Result<DelayStats> {
        self.finish()
    }

    fn finish(&mut self) -> Result<DelayStats> {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow!("the delay line's thread panicked"))?,
            None => Ok(DelayStats::default()),
        }
    }
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

fn open_queue() -> Result<nfq::Queue> {
    let mut q = nfq::Queue::open().context("open an nfqueue netlink socket")?;
    q.bind(QUEUE_NUM)
        .with_context(|| format!("bind nfqueue {QUEUE_NUM}"))?;
    q.set_copy_range(QUEUE_NUM, COPY_RANGE)
        .context("nfqueue copy range")?;
    q.set_queue_max_len(QUEUE_NUM, MAX_HELD)
        .context("nfqueue length")?;
    q.set_fail_open(QUEUE_NUM, false)
        .context("nfqueue fail-open off")?;
    q.set_nonblocking(true);
    Ok(q)
}

/// One held packet (`M`: the queue's message), ordered by due time, then arrival, for the heap.
struct Held<M> {
    due: Instant,
    seq: u64,
    msg: M,
}

impl<M> PartialEq for Held<M> {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl<M> Eq for Held<M> {}
impl<M> PartialOrd for Held<M> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<M> Ord for Held<M> {
    // Reversed: `BinaryHeap` is a max-heap and the earliest due packet goes first.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

/// The IPv4 source and destination of a packet's first bytes.
pub fn addresses(packet: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    if packet.len() < 20 || packet[0] >> 4 != 4 {
        return None;
    }
    let src = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
    Some((src, dst))
}

fn serve(
    queue: &mut nfq::Queue,
    spec: &Mutex<DelaySpec>,
    stop: &AtomicBool,
    rng: &mut ChaCha8Rng,
    subnet: [u8; 3],
    host_of: HostOf,
) -> Result<DelayStats> {
    let mut stats = DelayStats::default();
    let mut held: BinaryHeap<Held<nfq::Message>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut errors_in_a_row = 0u32;
    let result = loop {
        if stop.load(Ordering::SeqCst) {
            break Ok(());
        }
        let mut got = 0;
        let now = Instant::now();
        let current = match spec.lock() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        while got < BATCH {
            match queue.recv() {
                Ok(msg) => {
                    got += 1;
                    errors_in_a_row = 0;
                    let (from, to) = match addresses(msg.get_payload()) {
                        Some((s, d)) => (host_of(s, subnet), host_of(d, subnet)),
                        None => (None, None),
                    };
                    let due = now + current.sample(rng, from, to);
                    seq += 1;
                    held.push(Held { due, seq, msg });
                    stats.max_held = stats.max_held.max(held.len());
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // ENOSPC (a message larger than the buffer) or a transient error: no packet
                // of it is held here, so go on (the kernel drops or times it out).
                Err(_) => {
                    stats.errors += 1;
                    errors_in_a_row += 1;
                    if errors_in_a_row >= MAX_ERRORS_IN_A_ROW {
                        break;
                    }
                }
            }
        }
        if errors_in_a_row >= MAX_ERRORS_IN_A_ROW {
            break Err(anyhow!(
                "{MAX_ERRORS_IN_A_ROW} nfqueue errors in a row; packets now bypass the delay"
            ));
        }
        let now = Instant::now();
        while held.peek().is_some_and(|h| h.due <= now) {
            if let Some(h) = held.pop() {
                stats.late_max = stats.late_max.max(now - h.due);
                give(queue, h.msg, &mut stats);
            }
        }
        if got < BATCH {
            let wait = held
                .peek()
                .map_or(TICK, |h| h.due.saturating_duration_since(Instant::now()))
                .min(TICK);
            thread::sleep(wait);
        }
    };
    // Stop: every held packet goes now, and what arrived meanwhile with it.
    while let Some(h) = held.pop() {
        give(queue, h.msg, &mut stats);
    }
    while let Ok(msg) = queue.recv() {
        give(queue, msg, &mut stats);
    }
    stats.overflow_dropped = kernel_drops(QUEUE_NUM).unwrap_or(0);
    result.map(|()| stats)
}

/// Gives the ACCEPT verdict on `msg`.
fn give(queue: &mut nfq::Queue, mut msg: nfq::Message, stats: &mut DelayStats) {
    msg.set_verdict(nfq::Verdict::Accept);
    match queue.verdict(msg) {
        Ok(()) => stats.delayed += 1,
        Err(_) => stats.errors += 1,
    }
}

/// The kernel's drop counters of queue `num` in this thread's namespace.
fn kernel_drops(num: u16) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/net/netfilter/nfnetlink_queue").ok()?;
    parse_queue_drops(&text, num)
}

/// `queue_dropped + queue_user_dropped` of queue `num` in the text of
/// `/proc/net/netfilter/nfnetlink_queue` (`num portid total mode range dropped user_dropped
/// id_seq 1`, one line per queue).
pub fn parse_queue_drops(text: &str, num: u16) -> Option<u64> {
    text.lines().find_map(|line| {
        let f: Vec<u64> = line
            .split_whitespace()
            .map(|w| w.parse().ok())
            .collect::<Option<Vec<u64>>>()?;
        if f.len() >= 7 && f[0] == u64::from(num) {
            Some(f[5].saturating_add(f[6]))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn jitter_is_uniform_around_the_delay_and_never_negative() {
        let spec = DelaySpec {
            delay: ms(20),
            jitter: ms(50),
            ..DelaySpec::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let draws: Vec<f64> = (0..20_000)
            .map(|_| spec.sample(&mut rng, Some(0), Some(1)).as_secs_f64() * 1000.0)
            .collect();
        assert!(draws.iter().all(|&d| (0.0..=70.0 + 1e-6).contains(&d)));
        // Uniform on [-30, 70] clamped at 0: 30 % of the draws are 0, the mean is 24.5 ms.
        let zeros = draws.iter().filter(|&&d| d == 0.0).count() as f64 / draws.len() as f64;
        assert!((zeros - 0.30).abs() < 0.02, "{zeros}");
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((mean - 24.5).abs() < 1.0, "{mean}");
        // No jitter: exactly the delay.
        let fixed = DelaySpec {
            delay: ms(20),
            ..DelaySpec::default()
        };
        assert_eq!(fixed.sample(&mut rng, None, None), ms(20));
    }

    #[test]
    fn the_same_seed_gives_the_same_delays() {
        let spec = DelaySpec {
            delay: ms(20),
            jitter: ms(50),
            ..DelaySpec::default()
        };
        let run = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..100)
                .map(|_| spec.sample(&mut rng, Some(0), Some(1)))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn a_matrix_sets_the_base_delay_of_its_pairs_only() {
        let m = RttMatrix::parse("# rtt\n0 1 40\n2 1 100.5 # far\n\n", 3).unwrap();
        assert_eq!(m.len(), 2);
        let spec = DelaySpec {
            delay: ms(5),
            jitter: Duration::ZERO,
            matrix: m,
        };
        assert_eq!(spec.base(Some(1), Some(0)), ms(20));
        assert_eq!(spec.base(Some(1), Some(2)), Duration::from_micros(50_250));
        assert_eq!(spec.base(Some(0), Some(2)), ms(5));
        assert_eq!(spec.base(None, Some(2)), ms(5));
        assert_eq!(spec.mean_rtt(0, 1, 11), ms(40));
    }

    #[test]
    fn bad_matrix_lines_are_refused_with_their_line() {
        for (text, why) in [
            ("0 1", "line 1"),
            ("0 1 40\n0 5 40", "host 5 of 3"),
            ("0 0 40", "itself"),
            ("0 1 -3", "outside"),
            ("0 1 NaN", "outside"),
            ("0 1 99999", "outside"),
            ("a 1 40", "not a host"),
            ("0 1 40 7", "line 1"),
        ] {
            let e = format!("{:#}", RttMatrix::parse(text, 3).unwrap_err());
            assert!(e.contains(why), "{text:?}: {e}");
        }
    }

    #[test]
    fn durations_of_the_command_line_parse_with_their_unit() {
        assert_eq!(parse_duration("20ms"), Ok(ms(20)));
        assert_eq!(parse_duration("20"), Ok(ms(20)));
        assert_eq!(parse_duration("0.5s"), Ok(ms(500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "ms", "-1ms", "20 minutes", "11s", "inf", "NaNms"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses_come_from_ipv4_headers_only() {
        let mut p = [0u8; 20];
        p[0] = 0x45;
        p[12..16].copy_from_slice(&[10, 213, 1, 10]);
        p[16..20].copy_from_slice(&[10, 213, 1, 11]);
        assert_eq!(
            addresses(&p),
            Some((Ipv4Addr::new(10, 213, 1, 10), Ipv4Addr::new(10, 213, 1, 11)))
        );
        assert_eq!(addresses(&p[..19]), None);
        p[0] = 0x60;
        assert_eq!(addresses(&p), None);
    }

    #[test]
    fn the_kernels_drop_counters_are_read_for_our_queue() {
        let text = "    1  12345     0 2  64    7    1     99 1\n    0  4242     3 2  64   10    2   1000 1\n";
        assert_eq!(parse_queue_drops(text, 0), Some(12));
        assert_eq!(parse_queue_drops(text, 1), Some(8));
        assert_eq!(parse_queue_drops(text, 2), None);
        assert_eq!(parse_queue_drops("garbage\n", 0), None);
    }

    #[test]
    fn held_packets_leave_earliest_due_first_then_in_arrival_order() {
        let t = Instant::now();
        let mut heap = BinaryHeap::new();
        for (due, seq) in [(5, 1), (1, 3), (1, 2), (9, 4)] {
            heap.push(Held {
                due: t + ms(due),
                seq,
                msg: (),
            });
        }
        let order: Vec<u64> = std::iter::from_fn(|| heap.pop().map(|h| h.seq)).collect();
        assert_eq!(order, [2, 3, 1, 4]);
    }
}
