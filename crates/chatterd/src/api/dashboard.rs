//! The web dashboard: `GET /` and its two assets, embedded in the binary.
//!
//! A self-contained page (no CDN, no build step): `assets/index.html`, `assets/dashboard.css`
//! and `assets/dashboard.js` are compiled in with `include_str!` and served as they are. The
//! script reads the API of the node that served it (`/v1/members`, `/v1/kv`, `/v1/self`, every
//! few seconds) and follows its event stream (`/v1/events`), so the table changes as soon as a
//! member joins, is suspected, fails or leaves, without a reload.
//!
//! Every URL in the page is relative, so it also works behind a reverse proxy under a sub-path.
//! The page is served with a strict Content-Security-Policy (scripts, styles and connections
//! only from this origin; nothing inline): member names, tags and key/values come from the
//! network, and the script only ever inserts them as text.
//!
//! Stable hooks for tests and scripts: the members table is `#members`; each member's row is
//! `tr[data-member="NAME"]` with `data-status` (`alive`, `suspect`, `failed`, `left`), and its
//! status cell is `td[data-field="status"]`. The event log is `#events`, one `li[data-type]`
//! per event; `#stream` has `data-state` `open` or `closed`.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::api::shared::AppState;

/// The page.
pub const INDEX_HTML: &str = include_str!("../../assets/index.html");
/// Its style sheet, served at [`CSS_PATH`].
pub const DASHBOARD_CSS: &str = include_str!("../../assets/dashboard.css");
/// Its script, served at [`JS_PATH`].
pub const DASHBOARD_JS: &str = include_str!("../../assets/dashboard.js");

/// Where the style sheet is served.
pub const CSS_PATH: &str = "/assets/dashboard.css";
/// Where the script is served.
pub const JS_PATH: &str = "/assets/dashboard.js";

/// Only this origin, nothing inline, no frames.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// The routes of the dashboard, to merge into the API's router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route(CSS_PATH, get(css))
        .route(JS_PATH, get(js))
}

/// Headers of every asset: its type, the policy, and "ask again" so that an upgraded daemon
/// never serves a stale script from the browser's cache.
fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
}

async fn index() -> impl IntoResponse {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn css() -> impl IntoResponse {
    asset("text/css; charset=utf-8", DASHBOARD_CSS)
}

async fn js() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", DASHBOARD_JS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_its_assets_from_this_origin_only() {
        assert!(INDEX_HTML.contains(r#"src="assets/dashboard.js""#));
        assert!(INDEX_HTML.contains(r#"href="assets/dashboard.css""#));
        assert_eq!(format!("/{}", "assets/dashboard.js"), JS_PATH);
        assert_eq!(format!("/{}", "assets/dashboard.css"), CSS_PATH);
        for text in [INDEX_HTML, DASHBOARD_CSS, DASHBOARD_JS] {
            assert!(!text.contains("http://") && !text.contains("https://"));
            assert!(!text.contains("//cdn"));
        }
    }
}
