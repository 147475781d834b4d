//! What the API accepts from web browsers: the `Host` check against DNS rebinding and the
//! `Content-Type` rule against cross-site request forgery. Both run before any handler, so a
//! refused request changes nothing: the `Host` check first of all, the `Content-Type` rule
//! after the token check (a client without the token learns nothing more than 401).
//!
//! **DNS rebinding.** A page on `evil.example` can make its name resolve to 127.0.0.1 and then
//! call this API from the victim's browser as if it were its own origin; the browser then sends
//! `Host: evil.example:8428`. The daemon answers only requests whose `Host` (or absolute request
//! target) is one of its own names: the bound IP address; any loopback address and `localhost`
//! when bound to loopback; any IP address and `localhost` when bound to `0.0.0.0` or `[::]`; and the
//! names of `--http-allowed-host`. Anything else gets `421 Misdirected Request` with a JSON
//! error. The port is not compared: a rebinding attacker chooses the name, never an IP literal or
//! `localhost` (those are the browser's own, same-origin), and ignoring the port keeps SSH
//! tunnels and reverse proxies working. A request without `Host` is HTTP/1.0 from a tool (no
//! browser leaves it out, so it cannot be a rebinding) and is served; HTTP/1.1 without it is
//! malformed (RFC 9112, 3.2) and gets 400.
//!
//! **Cross-site request forgery.** Any web page can make the browser send a `POST` with a
//! "simple" body (`text/plain`, a form, or no type at all) to this API without asking it first
//! (no CORS preflight). So every `POST` must declare `Content-Type: application/json`, which a
//! browser only sends cross-origin after a preflight `OPTIONS` that this API never approves (it
//! answers no CORS headers); anything else gets `415 {"error": ...}`. `PUT` and `DELETE` are
//! never sent cross-origin without a preflight, so `PUT /v1/kv/{key}` keeps taking its value as
//! raw bytes of any type (`curl --data-binary`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{CONTENT_TYPE, HOST};
use axum::http::{Method, StatusCode, Version};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::api::shared::ApiError;

/// The host names and addresses the API answers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHosts {
    bound: IpAddr,
    /// `--http-allowed-host`, as [`crate::options::values::parse_allowed_host`] normalised them.
    names: Vec<String>,
}

/// The host part of a `Host` header or of an absolute request target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// An IP literal (IPv6 in brackets in the header).
    Ip(IpAddr),
    /// A name, lower-cased, without a trailing dot.
    Name(String),
}

impl Host {
    /// Parses `host[:port]`, `[v6][:port]`; `None` if it is not one.
    pub fn parse(text: &str) -> Option<Host> {
        let text = text.trim();
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (inside, after) = rest.split_once(']')?;
            let ip = inside.parse::<std::net::Ipv6Addr>().ok()?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':')?),
            };
            return port_ok(port).then_some(Host::Ip(IpAddr::V6(ip)));
        } else {
            match text.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (text, None),
            }
        };
        if host.is_empty() || !port_ok(port) {
            return None;
        }
        if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
            return Some(Host::Ip(IpAddr::V4(ip)));
        }
        let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        valid.then_some(Host::Name(name))
    }
}

/// An empty port (`host:`) is allowed by RFC 3986; otherwise digits that fit a port.
fn port_ok(port: Option<&str>) -> bool {
    match port {
        None | Some("") => true,
        Some(p) => p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok(),
    }
}

impl AllowedHosts {
    /// The names of an API bound to `bound`, plus `names` (from `--http-allowed-host`).
    pub fn new(bound: SocketAddr, names: Vec<String>) -> AllowedHosts {
        AllowedHosts {
            bound: bound.ip().to_canonical(),
            names,
        }
    }

    /// Whether the API answers to `host`.
    pub fn allows(&self, host: &Host) -> bool {
        let any_address = self.bound.is_unspecified();
        let loopback = self.bound.is_loopback();
        match host {
            Host::Ip(ip) => {
                let ip = ip.to_canonical();
                ip == self.bound
                    || any_address
                    || (loopback && ip.is_loopback())
                    || self.names.contains(&literal(ip))
            }
            Host::Name(name) => {
                (name == "localhost" && (loopback || any_address)) || self.names.contains(name)
            }
        }
    }

    /// What the API answers to, for the error message.
    fn describe(&self) -> String {
        let mut parts = vec![if self.bound.is_unspecified() {
            "any IP address".to_owned()
        } else if self.bound.is_loopback() {
            "loopback addresses".to_owned()
        } else {
            literal(self.bound)
        }];
        if self.bound.is_unspecified() || self.bound.is_loopback() {
            parts.push("localhost".to_owned());
        }
        parts.extend(self.names.iter().cloned());
        parts.join(", ")
    }
}

/// An IP address as the `Host` header writes it (IPv6 in brackets).
fn literal(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// Wraps `router` so that every `POST` must be JSON (see the module doc).
pub fn require_json_posts(router: Router) -> Router {
    router.layer(middleware::from_fn(require_json_post))
}

/// Wraps `router` so that only requests to one of the API's names reach it; the daemon applies
/// it last, so that it runs first.
pub fn check_hosts(router: Router, allowed: AllowedHosts) -> Router {
    router.layer(middleware::from_fn_with_state(
        Arc::new(allowed),
        check_host,
    ))
}

/// Middleware: refuses a request whose host is not one of the API's (see the module doc).
pub async fn check_host(
    State(allowed): State<Arc<AllowedHosts>>,
    request: Request,
    next: Next,
) -> Response {
    // An absolute request target (`GET http://host/ HTTP/1.1`) names the host; the Host header
    // is then ignored (RFC 9112, 3.2.2).
    let given = match request.uri().authority() {
        Some(authority) => Some(authority.as_str().to_owned()),
        None => {
            let mut values = request.headers().get_all(HOST).iter();
            match (values.next(), values.next()) {
                (None, _) => None,
                (Some(value), None) => match value.to_str() {
                    Ok(text) => Some(text.to_owned()),
                    Err(_) => return bad_host("the Host header is not ASCII"),
                },
                (Some(_), Some(_)) => return bad_host("more than one Host header"),
            }
        }
    };
    let Some(given) = given else {
        if request.version() <= Version::HTTP_10 {
            return next.run(request).await;
        }
        return bad_host("missing Host header (HTTP/1.1 requires one)");
    };
    let Some(host) = Host::parse(&given) else {
        return bad_host(&format!("invalid Host {given:?}"));
    };
    if allowed.allows(&host) {
        return next.run(request).await;
    }
    ApiError::new(
        StatusCode::MISDIRECTED_REQUEST,
        format!(
            "host {given:?} is not a name of this daemon (it answers to {}): refused, as a \
             possible DNS rebinding; start chatterd with --http-allowed-host NAME for a name \
             of its own",
            allowed.describe()
        ),
    )
    .into_response()
}

fn bad_host(message: &str) -> Response {
    ApiError::new(StatusCode::BAD_REQUEST, message).into_response()
}

/// Whether a `Content-Type` value is `application/json` (any case, any parameters).
pub fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// Middleware: a `POST` must declare `Content-Type: application/json` (see the module doc).
pub async fn require_json_post(request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    match content_type {
        Some(ref given) if is_json(given) => next.run(request).await,
        other => {
            let got = match other {
                Some(given) => format!("got {given:?}"),
                None => "got none".to_owned(),
            };
            ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "POST needs Content-Type: application/json ({got}): any web page can make a \
                     browser send other types here without asking, so they are refused"
                ),
            )
            .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(text: &str) -> Host {
        Host::parse(text).unwrap_or_else(|| panic!("{text:?} does not parse"))
    }

    #[test]
    fn host_headers_parse() {
        assert_eq!(host("127.0.0.1:8428"), Host::Ip([127, 0, 0, 1].into()));
        assert_eq!(host("[::1]:8428"), Host::Ip("::1".parse().unwrap()));
        assert_eq!(host("[::1]"), Host::Ip("::1".parse().unwrap()));
        assert_eq!(host("LocalHost.:80"), Host::Name("localhost".into()));
        assert_eq!(host("api.example"), Host::Name("api.example".into()));
        assert_eq!(host("api.example:"), Host::Name("api.example".into()));
        for bad in [
            "",
            ":80",
            "a b",
            "[::1",
            "[zz]:1",
            "host:port",
            "h:99999",
            "[::1]x",
            "é",
        ] {
            assert_eq!(Host::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_loopback_api_answers_to_loopback_names_only() {
        let allowed = AllowedHosts::new("127.0.0.1:8428".parse().unwrap(), vec![]);
        for ok in [
            "127.0.0.1:8428",
            "127.0.0.2:8428",
            "[::1]:8428",
            "localhost:9000",
        ] {
            assert!(allowed.allows(&host(ok)), "{ok}");
        }
        for refused in [
            "evil.example:8428",
            "10.0.0.7:8428",
            "localhost.evil.example",
        ] {
            assert!(!allowed.allows(&host(refused)), "{refused}");
        }
    }

    #[test]
    fn an_api_on_every_address_answers_to_any_ip_and_the_names_given() {
        let allowed =
            AllowedHosts::new("0.0.0.0:8428".parse().unwrap(), vec!["api.example".into()]);
        for ok in [
            "10.0.0.7:8428",
            "[2001:db8::1]:8428",
            "localhost",
            "api.example:443",
        ] {
            assert!(allowed.allows(&host(ok)), "{ok}");
        }
        assert!(!allowed.allows(&host("evil.example")));
    }

    #[test]
    fn an_api_on_one_address_answers_to_that_address_and_the_names_given() {
        let allowed = AllowedHosts::new("10.0.0.7:8428".parse().unwrap(), vec!["[::1]".into()]);
        assert!(allowed.allows(&host("10.0.0.7:8428")));
        assert!(allowed.allows(&host("[::1]:8428")));
        assert!(!allowed.allows(&host("10.0.0.8:8428")));
        assert!(!allowed.allows(&host("localhost:8428")));
        assert!(!allowed.allows(&host("127.0.0.1:8428")));
    }

    #[test]
    fn json_is_recognised_with_parameters_in_any_case() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/jsonp"));
        assert!(!is_json("application/x-www-form-urlencoded"));
    }
}
