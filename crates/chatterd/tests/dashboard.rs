//! `GET /` of a real daemon: the dashboard page and its assets are served from the binary,
//! reference nothing outside this origin, and carry the hooks the browser suite relies on.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::Daemon;

/// `GET path`: (status, lower-cased head, body).
fn get_with_head(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: text/html\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("no header end");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// Every value of `attr="..."` in `html`.
fn attribute_values<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
    let needle = format!("{attr}=\"");
    html.match_indices(&needle)
        .filter_map(|(at, _)| {
            let rest = &html[at + needle.len()..];
            rest.split_once('"').map(|(value, _)| value)
        })
        .collect()
}

#[test]
fn the_dashboard_is_served_from_the_binary_and_references_no_other_host() {
    let daemon = Daemon::start("dashboard-1", "local", &[]);

    let (status, head, page) = get_with_head(daemon.http, "/");
    assert_eq!(status, 200, "{head}\n{page}");
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(
        head.contains("content-security-policy: default-src 'none'"),
        "{head}"
    );
    assert!(page.starts_with("<!doctype html>"), "{page}");
    assert!(page.contains(r#"<script src="assets/dashboard.js" defer></script>"#));
    assert!(page.contains(r#"<table id="members">"#));
    assert!(page.contains(r#"id="events""#));
    assert_eq!(page, chatterd::api::dashboard::INDEX_HTML);

    // The script and the style sheet the page names are served, from the binary.
    let mut referenced = attribute_values(&page, "src");
    referenced.extend(attribute_values(&page, "href"));
    assert!(
        referenced.contains(&"assets/dashboard.js"),
        "{referenced:?}"
    );
    assert!(
        referenced.contains(&"assets/dashboard.css"),
        "{referenced:?}"
    );
    for url in &referenced {
        assert!(
            !url.contains("//") && !url.starts_with('/'),
            "the page references {url:?}, not a relative URL of this origin"
        );
    }
    let (status, head, js) = get_with_head(daemon.http, "/assets/dashboard.js");
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/javascript"), "{head}");
    assert_eq!(js, chatterd::api::dashboard::DASHBOARD_JS);
    assert!(js.contains("new EventSource('v1/events')"));
    assert!(js.contains("v1/members") && js.contains("v1/kv") && js.contains("data-member"));
    let (status, head, css) = get_with_head(daemon.http, "/assets/dashboard.css");
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/css"), "{head}");
    assert_eq!(css, chatterd::api::dashboard::DASHBOARD_CSS);

    // Nothing is loaded from elsewhere: no absolute URL of any host in what is served.
    for (name, text) in [("page", &page), ("script", &js), ("style", &css)] {
        for scheme in ["http://", "https://", "ws://", "wss://"] {
            assert!(!text.contains(scheme), "the {name} contains {scheme}");
        }
        assert!(
            !text.contains("url(//"),
            "the {name} loads from another host"
        );
        assert!(
            !text.contains("@import"),
            "the {name} imports a style sheet"
        );
    }

    // The API is still JSON beside it.
    let (status, _, body) = get_with_head(daemon.http, "/no/such/page");
    assert_eq!(status, 404);
    assert!(body.contains("\"error\""), "{body}");
}
