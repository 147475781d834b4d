//! System status: every daemon publishes its host's load, CPU, memory, root filesystem, boot
//! time and its own version under `sys/` in its key/value state (see
//! [`chatter_api::SystemStatus`] for the keys and formats), sampled every `--status-interval`
//! (default [`DEFAULT_INTERVAL`]).
//!
//! A value is republished only when it has drifted past its threshold since it was last
//! *published* (so a slow drift is caught too), which keeps a quiet machine silent:
//!
//! | value | republished when it moved by at least |
//! | --- | --- |
//! | load (any of 1/5/15 min) | 0.25 × cores |
//! | CPU use | 10 percentage points |
//! | memory used | 2 % of total memory |
//! | root filesystem used | 2 % of its size |
//! | cores, totals, boot time, version | any change |

use std::time::Duration;

use chatter::Handle;
use chatter_api::{SystemStatus, Usage};
use sysinfo::{CpuRefreshKind, DiskRefreshKind, Disks, MemoryRefreshKind, RefreshKind, System};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

/// Sampling interval when `--status-interval` is not given. Every republished value is news
/// for every node, so each node relays every other node's status: the cost per node grows with
/// the cluster. 30 s and the thresholds below keep it under Serf's whole idle traffic at 50
/// nodes on a busy host; health checks, not status, carry what is urgent.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// CPU use threshold, percentage points.
pub const CPU_THRESHOLD: f64 = 10.0;
/// Load threshold per core.
pub const LOAD_THRESHOLD_PER_CORE: f64 = 0.25;
/// Memory and disk threshold, fraction of the total.
pub const USAGE_THRESHOLD: f64 = 0.02;

/// `moved >= threshold`, forgiving the rounding of decimal figures (1.4 - 1.0 < 0.4 in binary).
fn past(moved: f64, threshold: f64) -> bool {
    moved >= threshold - 1e-9
}

fn usage_moved(old: Option<Usage>, new: Option<Usage>) -> bool {
    match (old, new) {
        (Some(old), Some(new)) => {
            old.total != new.total
                || past(
                    old.used.abs_diff(new.used) as f64,
                    USAGE_THRESHOLD * new.total as f64,
                )
        }
        (old, new) => old != new,
    }
}

/// The keys of `sample` worth publishing given what was last published.
pub fn changed_keys(published: &SystemStatus, sample: &SystemStatus) -> Vec<&'static str> {
    let cores = f64::from(sample.cores.or(published.cores).unwrap_or(1).max(1));
    let mut keys = Vec::new();
    let load_moved = match (published.load, sample.load) {
        (Some(old), Some(new)) => old
            .iter()
            .zip(new.iter())
            .any(|(a, b)| past((a - b).abs(), LOAD_THRESHOLD_PER_CORE * cores)),
        (old, new) => old.is_none() && new.is_some(),
    };
    if load_moved {
        keys.push(SystemStatus::LOAD);
    }
    let cpu_moved = match (published.cpu_percent, sample.cpu_percent) {
        (Some(old), Some(new)) => past((old - new).abs(), CPU_THRESHOLD),
        (old, new) => old.is_none() && new.is_some(),
    };
    if cpu_moved {
        keys.push(SystemStatus::CPU);
    }
    if sample.cores.is_some() && published.cores != sample.cores {
        keys.push(SystemStatus::CORES);
    }
    if sample.memory.is_some() && usage_moved(published.memory, sample.memory) {
        keys.push(SystemStatus::MEMORY);
    }
    if sample.disk.is_some() && usage_moved(published.disk, sample.disk) {
        keys.push(SystemStatus::DISK);
    }
    if sample.boot_time.is_some() && published.boot_time != sample.boot_time {
        keys.push(SystemStatus::BOOT);
    }
    if sample.version.is_some() && published.version != sample.version {
        keys.push(SystemStatus::VERSION);
    }
    keys
}

/// Copies the fields named by `keys` from `sample` into `published`.
fn record(published: &mut SystemStatus, sample: &SystemStatus, key: &str) {
    match key {
        SystemStatus::LOAD => published.load = sample.load,
        SystemStatus::CPU => published.cpu_percent = sample.cpu_percent,
        SystemStatus::CORES => published.cores = sample.cores,
        SystemStatus::MEMORY => published.memory = sample.memory,
        SystemStatus::DISK => published.disk = sample.disk,
        SystemStatus::BOOT => published.boot_time = sample.boot_time,
        SystemStatus::VERSION => published.version = sample.version.clone(),
        _ => {}
    }
}

/// Reads the host's figures through `sysinfo`.
pub struct Sampler {
    system: System,
    disks: Disks,
}

impl Default for Sampler {
    fn default() -> Self {
        Self::new()
    }
}

impl Sampler {
    /// A sampler; the CPU use of the first [`Sampler::sample`] covers the time since this call.
    pub fn new() -> Self {
        let system = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing().with_cpu_usage())
                .with_memory(MemoryRefreshKind::nothing().with_ram()),
        );
        Self {
            system,
            disks: Disks::new(),
        }
    }

    /// Takes a sample (blocking: reads `/proc` and calls `statvfs`).
    pub fn sample(&mut self) -> SystemStatus {
        self.system.refresh_cpu_usage();
        self.system
            .refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        self.disks
            .refresh_specifics(true, DiskRefreshKind::nothing().with_storage());
        let load = System::load_average();
        let cores = u32::try_from(self.system.cpus().len())
            .ok()
            .filter(|&n| n > 0);
        let cpu = f64::from(self.system.global_cpu_usage());
        let total = self.system.total_memory();
        let disk = root_statvfs().or_else(|| {
            self.disks
                .list()
                .iter()
                .find(|d| d.mount_point() == std::path::Path::new("/"))
                .map(|d| Usage {
                    used: d.total_space().saturating_sub(d.available_space()),
                    total: d.total_space(),
                })
        });
        let boot = System::boot_time();
        SystemStatus {
            load: [load.one, load.five, load.fifteen]
                .iter()
                .all(|v| v.is_finite())
                .then_some([load.one, load.five, load.fifteen]),
            cpu_percent: Some(cpu).filter(|c| c.is_finite()),
            cores,
            memory: (total > 0).then(|| Usage {
                used: self.system.used_memory(),
                total,
            }),
            disk,
            boot_time: (boot > 0).then_some(boot),
            version: Some(crate::foundation::VERSION.to_owned()),
        }
    }
}

/// The root filesystem's usage through `statvfs("/")`, computed as `df` does: used is
/// `blocks - free`, and the total is used plus what is still available to ordinary users, so the
/// percentage matches `df`'s `Use%` (blocks reserved for root, or not backed by a thin-provisioned
/// disk, count neither as used nor as available). `sysinfo`'s `total - available` is the fallback.
#[allow(clippy::useless_conversion)] // the libc types are u64 on 64-bit targets only
fn root_statvfs() -> Option<Usage> {
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: the path is a NUL-terminated string and `stat` is valid for writes; it is read
    // only when statvfs reports success, which means it filled it.
    let stat = unsafe {
        if libc::statvfs(c"/".as_ptr(), stat.as_mut_ptr()) != 0 {
            return None;
        }
        stat.assume_init()
    };
    let frsize = u64::from(stat.f_frsize).max(1);
    let used = u64::from(stat.f_blocks)
        .saturating_sub(u64::from(stat.f_bfree))
        .saturating_mul(frsize);
    let available = u64::from(stat.f_bavail).saturating_mul(frsize);
    let total = used.saturating_add(available);
    (total > 0).then_some(Usage { used, total })
}

/// Starts the publisher: a first sample (after sysinfo's minimum CPU interval) is published in
/// full, then each sample every `interval` only where it moved past its threshold. `None` when
/// `interval` is zero (disabled).
pub fn spawn(handle: &Handle, interval: Duration) -> Option<JoinHandle<()>> {
    if interval.is_zero() {
        return None;
    }
    let handle = handle.clone();
    Some(tokio::spawn(async move {
        let mut sampler = Some(Sampler::new());
        let mut published = SystemStatus::default();
        tokio::time::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL).await;
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(mut s) = sampler.take() else { return };
            let (s, sample) = match tokio::task::spawn_blocking(move || {
                let sample = s.sample();
                (s, sample)
            })
            .await
            {
                Ok(done) => done,
                Err(e) => {
                    warn!(error = %e, "system status sampling failed; no more system status");
                    return;
                }
            };
            sampler = Some(s);
            for key in changed_keys(&published, &sample) {
                let Some(value) = sample.encode(key) else {
                    continue;
                };
                match handle.set(key, value).await {
                    Ok(_) => record(&mut published, &sample, key),
                    Err(chatter::Error::Stopped) => return,
                    Err(e) => debug!(key, error = %e, "cannot publish system status"),
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(load: f64, cpu: f64, mem_used: u64, disk_used: u64) -> SystemStatus {
        SystemStatus {
            load: Some([load, load, load]),
            cpu_percent: Some(cpu),
            cores: Some(4),
            memory: Some(Usage {
                used: mem_used,
                total: 1000,
            }),
            disk: Some(Usage {
                used: disk_used,
                total: 10_000,
            }),
            boot_time: Some(1_764_000_000),
            version: Some("0.1.0".into()),
        }
    }

    #[test]
    fn the_first_sample_is_published_in_full() {
        let keys = changed_keys(&SystemStatus::default(), &status(1.0, 10.0, 500, 5000));
        assert_eq!(keys.len(), SystemStatus::KEYS.len());
    }

    #[test]
    fn a_quiet_machine_publishes_nothing() {
        let published = status(1.0, 10.0, 500, 5000);
        // Load within 0.25 x 4 cores, CPU within 10 points, memory and disk within 2 %.
        let sample = status(1.95, 19.9, 519, 5199);
        assert!(changed_keys(&published, &sample).is_empty());
    }

    #[test]
    fn values_past_their_threshold_are_published() {
        let published = status(1.0, 10.0, 500, 5000);
        assert_eq!(
            changed_keys(&published, &status(2.0, 10.0, 500, 5000)),
            ["sys/load"]
        );
        assert_eq!(
            changed_keys(&published, &status(1.0, 20.0, 500, 5000)),
            ["sys/cpu"]
        );
        assert_eq!(
            changed_keys(&published, &status(1.0, 10.0, 480, 5000)),
            ["sys/mem"]
        );
        assert_eq!(
            changed_keys(&published, &status(1.0, 10.0, 500, 5200)),
            ["sys/disk"]
        );
    }

    #[test]
    fn slow_drift_is_measured_from_the_published_value() {
        let mut published = status(1.0, 10.0, 500, 5000);
        let mut last = published.clone();
        let mut republished = 0;
        // CPU creeping up one point per sample: every step is below the threshold, the sum is
        // not.
        for step in 1..=10 {
            let sample = status(1.0, 10.0 + 2.0 * f64::from(step), 500, 5000);
            for key in changed_keys(&published, &sample) {
                record(&mut published, &sample, key);
                republished += 1;
            }
            last = sample;
        }
        assert_eq!(republished, 2);
        assert_eq!(published.cpu_percent, Some(30.0));
        assert_eq!(last.cpu_percent, Some(30.0));
    }

    #[test]
    fn the_sampler_reads_this_host() {
        let mut sampler = Sampler::new();
        let sample = sampler.sample();
        assert!(sample.cores.unwrap_or(0) >= 1, "{sample:?}");
        assert!(sample
            .memory
            .is_some_and(|m| m.total > 0 && m.used <= m.total));
        assert!(sample
            .disk
            .is_some_and(|d| d.total > 0 && d.used <= d.total));
        assert!(sample.load.is_some());
        assert!(sample.boot_time.is_some());
    }
}
