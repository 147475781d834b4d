//! The event stream over HTTP: `GET /v1/events`, Server-Sent Events.
//!
//! Each connection subscribes to the node's events (membership changes, key changes, user
//! messages) and sends each as one SSE event whose `data` is an [`EventView`] in JSON, on one
//! line. The first event is `connected`. A comment line is sent every
//! [`EVENT_STREAM_KEEP_ALIVE`] when nothing else is, so proxies keep the connection open and
//! clients can tell a quiet daemon from a dead one.
//!
//! A client that reads too slowly never slows the daemon down: each connection has its own
//! bounded queue in the node's event channel (1,024 events), and when it is full the oldest
//! events are dropped for that connection only. The client then receives an `events-skipped`
//! event with the count before the next event it does get.

use std::convert::Infallible;
use std::time::UNIX_EPOCH;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use chatter::EventStream;
use chatter_api::{EventData, EventView};
use futures::stream::{self, Stream, StreamExt};
use tracing::debug;

use crate::api::shared::{AppState, TooManyStreams};
use crate::foundation::convert::{self, event_data, Clock};
use crate::options::flags::EVENT_STREAM_KEEP_ALIVE;

/// Unix milliseconds of `clock`'s wall-clock reading.
fn unix_ms(clock: &Clock) -> u64 {
    clock
        .system
        .duration_since(UNIX_EPOCH)
        .map_or(0, convert::millis)
}

/// An event of the stream, stamped now.
fn view(event: EventData, clock: &Clock) -> EventView {
    EventView {
        timestamp: unix_ms(clock),
        event,
    }
}

/// What a stream needs between two events.
struct Subscription {
    events: EventStream,
    local: String,
    /// Events skipped so far that the client was told about.
    reported: u64,
}

/// The events of one subscription: `connected`, then one per node event, with an
/// `events-skipped` before the first event after a gap. Ends when the node stops.
pub fn event_views(events: EventStream, local: String) -> impl Stream<Item = EventView> + Send {
    let connected = view(
        EventData::Connected {
            node: local.clone(),
        },
        &Clock::now(),
    );
    let subscription = Subscription {
        events,
        local,
        reported: 0,
    };
    let rest = stream::unfold(subscription, |mut sub| async move {
        let event = sub.events.recv().await?;
        let clock = Clock::now();
        let mut out = Vec::with_capacity(2);
        // The node's event channel drops the oldest events of a subscriber that fell behind;
        // the stream counts them, and the client hears how many before the next event.
        let skipped = sub.events.skipped();
        if skipped > sub.reported {
            out.push(view(
                EventData::EventsSkipped {
                    skipped: skipped - sub.reported,
                },
                &clock,
            ));
            sub.reported = skipped;
        }
        out.push(view(event_data(&event, &sub.local, &clock), &clock));
        Some((stream::iter(out), sub))
    })
    .flatten();
    stream::iter([connected]).chain(rest)
}

/// One SSE event whose data is `view` as JSON.
fn sse_event(view: &EventView) -> Option<SseEvent> {
    match serde_json::to_string(view) {
        Ok(json) => Some(SseEvent::default().data(json)),
        Err(e) => {
            // Plain data always serializes; never seen, but never worth a panic either.
            debug!(error = %e, "cannot serialize an event");
            None
        }
    }
}

/// `GET /v1/events`; 503 with a JSON error when `--http-max-event-streams` streams are open.
pub async fn stream(
    State(state): State<AppState>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, TooManyStreams> {
    // The place is held by the stream, so it comes back when the client goes (hyper drops the
    // body) or the daemon stops.
    let place = state.limits.event_stream()?;
    // Subscribe before answering, so that anything that happens after the client got the
    // response headers (and the `connected` event) is in its stream.
    let events = state.handle.subscribe();
    let local = state.handle.name().to_owned();
    let sse = event_views(events, local).filter_map(move |view| {
        // The stream's closure owns the place: it is given back when the stream is dropped.
        let _held = &place;
        let event = sse_event(&view).map(Ok);
        async move { event }
    });
    Ok(Sse::new(sse).keep_alive(
        KeepAlive::new()
            .interval(EVENT_STREAM_KEEP_ALIVE)
            .text("keep-alive"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slow_client_skips_events_and_is_told_so() {
        let handle = chatter::Chatter::builder("lagging")
            .bind(([127, 0, 0, 1], 0).into())
            .config(chatter::Config::local())
            .spawn()
            .await
            .unwrap();
        let stream = event_views(handle.subscribe(), handle.name().to_owned());
        // Far more events than a subscriber's backlog, while nobody reads the stream: the
        // node is never blocked.
        for i in 0..1500u32 {
            handle.set("counter", i.to_string()).await.unwrap();
        }
        let mut stream = Box::pin(stream);
        let first = stream.next().await.unwrap();
        assert_eq!(
            first.event,
            EventData::Connected {
                node: "lagging".into()
            }
        );
        match stream.next().await.unwrap().event {
            EventData::EventsSkipped { skipped } => assert!(skipped >= 400, "{skipped}"),
            other => panic!("expected events-skipped, got {other:?}"),
        }
        let third = stream.next().await.unwrap();
        assert_eq!(third.event.kind(), "key-changed", "{third:?}");
        assert!(third.timestamp > 1_600_000_000_000);
        handle.shutdown().await.unwrap();
    }
}
