//! `rollpoint.v1.EventService`: the timeline as a list and as a live stream.

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::auth::authorize;
use super::proto::event_service_server::EventService;
use super::proto::*;
use super::{blocking, convert};
use crate::engine::event_pages::EventFilter;
use crate::engine::tokens::Scope;
use crate::engine::views::EventRecord;
use crate::engine::{Engine, EngineError};

/// Events sent to a watcher before it is caught up, per store read.
const CATCH_UP_CHUNK: usize = 256;

pub struct Events {
    pub engine: Arc<Engine>,
    /// Becomes true at shutdown; live streams end then.
    pub stop: tokio::sync::watch::Receiver<bool>,
}

fn time(
    timestamp: Option<prost_types::Timestamp>,
    field: &'static str,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, Status> {
    timestamp
        .map(|t| {
            chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
                .ok_or_else(|| super::status::from_engine(EngineError::invalid(field, "is out of range")))
        })
        .transpose()
}

#[tonic::async_trait]
impl EventService for Events {
    async fn list_events(&self, request: Request<ListEventsRequest>) -> Result<Response<ListEventsResponse>, Status> {
        let container = request.get_ref().container.clone();
        authorize(&request, Scope::Read, (!container.is_empty()).then_some(container.as_str()))?;
        let request = request.into_inner();
        let filter = EventFilter {
            container: request.container,
            entry: request.entry,
            kind: request.kind,
            start_time: time(request.start_time, "start_time")?,
            end_time: time(request.end_time, "end_time")?,
        };
        let (events, next_page_token) = blocking(&self.engine, move |engine| {
            engine.list_events(&filter, request.page_size, &request.page_token, request.oldest_first)
        })
        .await?;
        Ok(Response::new(ListEventsResponse { events: events.iter().map(convert::event).collect(), next_page_token }))
    }

    type WatchEventsStream = Pin<Box<dyn Stream<Item = Result<Event, Status>> + Send>>;

    async fn watch_events(
        &self,
        request: Request<WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let container = request.get_ref().container.clone();
        authorize(&request, Scope::Read, (!container.is_empty()).then_some(container.as_str()))?;
        let WatchEventsRequest { after_sequence, container, entry } = request.into_inner();
        let engine = self.engine.clone();
        let (sender, receiver) = tokio::sync::mpsc::channel(64);
        let mut stop = self.stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = forward(engine, after_sequence, Filter { container, entry }, sender) => {}
                _ = stop.wait_for(|stopping| *stopping) => {}
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))))
    }
}

/// Which events a watcher asked for; an empty field matches any.
struct Filter {
    container: String,
    entry: String,
}

impl Filter {
    fn wants(&self, event: &EventRecord) -> bool {
        (self.container.is_empty() || event.container == self.container)
            && (self.entry.is_empty() || event.entry == self.entry)
    }
}

/// Sends the events after `after_sequence`, then the live ones, to `sender`
/// until the client goes away. Subscribes first, then catches up from the
/// store: nothing appended in between is missed, and duplicates are dropped
/// by sequence.
async fn forward(
    engine: Arc<Engine>,
    after_sequence: u64,
    filter: Filter,
    sender: tokio::sync::mpsc::Sender<Result<Event, Status>>,
) {
    let mut live = engine.events().subscribe();
    let mut last = after_sequence;
    let wanted = |event: &EventRecord| filter.wants(event);
    loop {
        let chunk = {
            let engine = engine.clone();
            match tokio::task::spawn_blocking(move || engine.events_after(last, CATCH_UP_CHUNK)).await {
                Ok(Ok(chunk)) => chunk,
                _ => return,
            }
        };
        let caught_up = chunk.len() < CATCH_UP_CHUNK;
        for event in chunk {
            last = event.sequence;
            if wanted(&event) && sender.send(Ok(convert::event(&event))).await.is_err() {
                return;
            }
        }
        if !caught_up {
            continue;
        }
        // Live from here; back to the store only after falling behind.
        loop {
            match live.recv().await {
                Ok(event) if event.sequence > last => {
                    last = event.sequence;
                    if wanted(&event) && sender.send(Ok(convert::event(&event))).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}
