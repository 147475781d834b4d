//! The monitoring side of the daemon: starting its health checks
//! ([`crate::subsystems::checks`]), service declarations ([`crate::subsystems::services`]),
//! system status ([`crate::subsystems::system`]) and event hooks
//! ([`crate::subsystems::hooks`]) together, and stopping them together. The endpoints that
//! read them back for the whole cluster are in the API layer.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use chatter::Handle;
use chatter_api::{ServiceDecl, CHECK_PREFIX, SYSTEM_PREFIX};
use tokio::task::JoinHandle;
use tracing::info;

use crate::options::checks::CheckSpec;
use crate::options::hooks::HandlerSpec;
use crate::subsystems::hooks::HandlerStats;

/// What the monitoring needs of the options, and the API's address for the hooks.
#[derive(Debug, Clone, Default)]
pub struct MonitoringSettings {
    /// `--check`.
    pub checks: Vec<CheckSpec>,
    /// `--service`.
    pub services: Vec<ServiceDecl>,
    /// `--status-interval` (zero: no system status).
    pub status_interval: Duration,
    /// `--event-handler`.
    pub event_handlers: Vec<HandlerSpec>,
    /// `--event-handler-timeout`.
    pub event_handler_timeout: Duration,
    /// This daemon's API (`ADDR`, or `https://ADDR` over TLS), for the hooks' `CHATTER_HTTP`.
    pub api_url: String,
}

/// The monitoring tasks of a running daemon; stopping (or dropping) them kills the commands
/// they are running.
pub struct Monitors {
    tasks: Vec<JoinHandle<()>>,
    /// Counters of the event handlers.
    pub handler_stats: Arc<HandlerStats>,
}

/// Deletes the keys a previous life restored from `--data-dir` that this daemon's monitoring
/// no longer writes: the `check/` of a check since removed, the `service/` of a service no
/// longer declared, and the `sys/` keys when the system status is off. Without it, a check or a
/// service dropped from the flags would stay published forever from the saved state. Keys
/// outside these prefixes (written through the API) are the user's and stay.
async fn forget_unmanaged_keys(handle: &Handle, settings: &MonitoringSettings) {
    if !handle
        .data_dir()
        .is_some_and(|d| d.started_from.is_restored())
    {
        return;
    }
    let Ok(Some(state)) = handle.node_state(handle.name()).await else {
        return;
    };
    let checks: Vec<String> = settings.checks.iter().map(|c| c.key()).collect();
    let services: Vec<String> = settings.services.iter().map(|s| s.key()).collect();
    let system_off = settings.status_interval.is_zero();
    for key in state.entries.keys() {
        let stale = (key.starts_with(CHECK_PREFIX) && !checks.contains(key))
            || (key.starts_with(chatter_api::SERVICE_PREFIX) && !services.contains(key))
            || (key.starts_with(SYSTEM_PREFIX) && system_off);
        if stale {
            info!(%key, "deleting a restored key that this daemon no longer publishes");
            let _ = handle.delete(key.clone()).await;
        }
    }
}

impl Monitors {
    /// Publishes the services, then starts the checks, the system status publisher and the
    /// event handlers. Fails only if the services cannot be published.
    pub async fn start(handle: &Handle, settings: &MonitoringSettings) -> Result<Monitors> {
        forget_unmanaged_keys(handle, settings).await;
        crate::subsystems::services::publish(handle, &settings.services)
            .await
            .map_err(|e| anyhow!("cannot publish the services: {e}"))?;
        let mut tasks = crate::subsystems::checks::spawn_all(handle, &settings.checks)
            .map_err(|e| anyhow!(e))?;
        tasks.extend(crate::subsystems::system::spawn(
            handle,
            settings.status_interval,
        ));
        let handler_stats = Arc::new(HandlerStats::default());
        if let Some(handlers) = crate::subsystems::hooks::spawn(
            handle,
            settings.event_handlers.clone(),
            settings.event_handler_timeout,
            settings.api_url.clone(),
            handler_stats.clone(),
        ) {
            tasks.extend(handlers);
        }
        if !(settings.checks.is_empty()
            && settings.services.is_empty()
            && settings.event_handlers.is_empty())
        {
            info!(
                checks = ?settings.checks.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
                services = ?settings.services.iter().map(|s| s.key()).collect::<Vec<_>>(),
                event_handlers = settings.event_handlers.len(),
                "monitoring started"
            );
        }
        Ok(Monitors {
            tasks,
            handler_stats,
        })
    }

    /// Stops every task (running commands are killed with their process groups).
    pub fn stop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

impl Drop for Monitors {
    fn drop(&mut self) {
        self.stop();
    }
}
