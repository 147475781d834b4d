//! This node: `GET /v1/self` (what it is and counts) and `GET /health` (whether it serves, for
//! load balancers and service managers).

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chatter::MemberStatus;
use chatter_api::{HealthStatus, HealthView, SelfView};

use crate::api::shared::AppState;
use crate::foundation::convert::{self, Clock};
use crate::foundation::VERSION;

/// `GET /v1/self`: this node as a member, with its counters, version, uptime, encryption and
/// data directory.
pub async fn self_view(State(state): State<AppState>) -> Json<SelfView> {
    let snapshot = state.handle.snapshot();
    let clock = Clock::now();
    Json(SelfView {
        member: convert::member_view(&snapshot.local, &clock, true),
        health_score: snapshot.health_score,
        stats: convert::stats_map(&snapshot.stats),
        io: convert::io_stats_map(&snapshot.io),
        version: VERSION.to_owned(),
        cluster: state.cluster.clone(),
        uptime_ms: clock.age_ms(state.started),
        encryption: chatter_api::EncryptionView {
            mode: snapshot.encryption_mode.as_str().to_owned(),
            keys: snapshot
                .keys
                .iter()
                .map(|k| chatter_api::KeyView {
                    fingerprint: k.fingerprint.to_string(),
                    primary: k.primary,
                })
                .collect(),
        },
        data_dir: state.handle.data_dir().map(convert::data_dir_view),
    })
}

/// `GET /health`: 200 `ok`, or 503 `leaving` once a shutdown signal arrived or the node left.
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<HealthView>) {
    let snapshot = state.handle.snapshot();
    let others_alive = snapshot
        .members
        .iter()
        .filter(|m| m.name != snapshot.local.name && m.status.is_live())
        .count();
    let others_total = snapshot
        .members
        .iter()
        .filter(|m| m.name != snapshot.local.name)
        .count();
    let leaving = state.leaving.load(Ordering::Relaxed)
        || !matches!(
            snapshot.local.status,
            MemberStatus::Alive | MemberStatus::Suspect
        );
    let (code, status) = if leaving {
        (StatusCode::SERVICE_UNAVAILABLE, HealthStatus::Leaving)
    } else {
        (StatusCode::OK, HealthStatus::Ok)
    };
    (
        code,
        Json(HealthView {
            status,
            name: snapshot.local.name.clone(),
            members_alive: others_alive + 1,
            members_total: others_total + 1,
            health_score: snapshot.health_score,
            version: VERSION.to_owned(),
        }),
    )
}
