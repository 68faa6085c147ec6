//! The caller's (router's) side of the NATS bus.

use std::sync::Arc;
use std::time::Duration;

use async_nats::{HeaderMap, Message, StatusCode, Subscriber};
use bytes::Bytes;
use futures_util::StreamExt;
use prost::Message as _;
use switchyard_proto::bus::v1::{CancelRequest, WorkEvent, WorkRequest};

use super::{CALL_HEADER, Inner, connection_error, to_header_map};
use crate::{BusError, Call, Event, Headers, is_terminal};

/// Missed heartbeats after which a worker counts as lost.
const MISSED_HEARTBEATS: u32 = 3;

pub(super) async fn call(
    inner: &Arc<Inner>,
    request: WorkRequest,
    headers: Headers,
) -> Result<Call, BusError> {
    if inner.shutdown.is_cancelled() {
        return Err(BusError::Closed);
    }
    let client = &inner.client;
    let provider = request.provider.clone();
    let inbox = client.new_inbox();
    // Subscribed before publishing, so neither the answer nor the server's
    // no-responders status can arrive before anyone listens.
    let mut events = client
        .subscribe(inbox.clone())
        .await
        .map_err(connection_error)?;
    let payload = Bytes::from(request.encode_to_vec());
    let subject = inner.subjects.work(&provider);
    let header_map = to_header_map(&headers);
    let published = if header_map.is_empty() {
        client
            .publish_with_reply(subject, inbox.clone(), payload)
            .await
    } else {
        client
            .publish_with_reply_and_headers(subject, inbox.clone(), header_map, payload)
            .await
    };
    published.map_err(connection_error)?;

    let mut cancel = CancelOnDrop {
        inner: inner.clone(),
        provider: provider.clone(),
        request_id: request.request_id.clone(),
        call_id: inbox,
        worker_id: None,
        armed: true,
    };

    let first = match tokio::time::timeout(inner.ack_timeout, events.next()).await {
        Ok(Some(msg)) => msg,
        Ok(None) => {
            cancel.armed = false;
            return Err(BusError::Closed);
        }
        // Still armed: a worker that is merely slow may accept later and
        // must not work for nobody.
        Err(_) => {
            return Err(BusError::WorkerLost {
                provider,
                reason: format!(
                    "no worker accepted the request within {:?}",
                    inner.ack_timeout
                ),
            });
        }
    };
    if first.status == Some(StatusCode::NO_RESPONDERS) {
        cancel.armed = false;
        return Err(BusError::NoResponders(provider));
    }
    let first = decode(&first)?;
    match (first.seq, first.event) {
        (0, Some(Event::Accepted(accepted))) => cancel.worker_id = Some(accepted.worker_id),
        (seq, event) => {
            return Err(BusError::Decode(format!(
                "expected `accepted` as event 0, got event {seq}: {}",
                event_name(event.as_ref())
            )));
        }
    }

    let state = CallState {
        events,
        cancel,
        next_seq: 1,
        lost_after: inner.heartbeat_interval * MISSED_HEARTBEATS,
        done: false,
    };
    Ok(Call::new(Box::pin(futures_util::stream::unfold(
        state,
        |mut state| async move {
            let item = state.next().await?;
            Some((item, state))
        },
    ))))
}

struct CallState {
    events: Subscriber,
    cancel: CancelOnDrop,
    next_seq: u64,
    lost_after: Duration,
    done: bool,
}

impl CallState {
    async fn next(&mut self) -> Option<Result<Event, BusError>> {
        if self.done {
            return None;
        }
        let item = self.next_content().await;
        match &item {
            Ok(event) if is_terminal(event) => {
                self.done = true;
                self.cancel.armed = false;
            }
            Ok(_) => {}
            // Errors end the call; `cancel` stays armed so a worker that is
            // still alive stops when the caller lets go.
            Err(_) => self.done = true,
        }
        Some(item)
    }

    async fn next_content(&mut self) -> Result<Event, BusError> {
        loop {
            // Measured from when we start waiting, so a caller that reads
            // slowly never mistakes buffered events for silence.
            let msg = match tokio::time::timeout(self.lost_after, self.events.next()).await {
                Ok(Some(msg)) => msg,
                Ok(None) => return Err(BusError::Closed),
                Err(_) => {
                    return Err(BusError::WorkerLost {
                        provider: self.cancel.provider.clone(),
                        reason: format!(
                            "no event from worker `{}` for {:?}",
                            self.cancel.worker_id.as_deref().unwrap_or("?"),
                            self.lost_after
                        ),
                    });
                }
            };
            let event = decode(&msg)?;
            if event.seq != self.next_seq {
                return Err(BusError::Decode(format!(
                    "event {} arrived where {} was due: events were lost",
                    event.seq, self.next_seq
                )));
            }
            self.next_seq += 1;
            match event.event {
                Some(Event::Heartbeat(_) | Event::Accepted(_)) => continue,
                Some(content) => return Ok(content),
                None => {
                    return Err(BusError::Decode(format!(
                        "event {} carries nothing",
                        event.seq
                    )));
                }
            }
        }
    }
}

fn decode(msg: &Message) -> Result<WorkEvent, BusError> {
    if let Some(status) = msg.status
        && status != StatusCode::OK
    {
        return Err(BusError::Connection(format!(
            "NATS status {status} on the reply subject: {}",
            msg.description.as_deref().unwrap_or("")
        )));
    }
    WorkEvent::decode(msg.payload.clone()).map_err(|e| BusError::Decode(format!("WorkEvent: {e}")))
}

fn event_name(event: Option<&Event>) -> &'static str {
    match event {
        None => "nothing",
        Some(Event::Accepted(_)) => "accepted",
        Some(Event::Heartbeat(_)) => "heartbeat",
        Some(Event::Result(_)) => "result",
        Some(Event::Chunk(_)) => "chunk",
        Some(Event::End(_)) => "end",
        Some(Event::Error(_)) => "error",
        Some(Event::Embeddings(_)) => "embeddings",
        Some(Event::Images(_)) => "images",
    }
}

/// Tells the worker to stop when the caller lets go of a call that has not
/// finished.
struct CancelOnDrop {
    inner: Arc<Inner>,
    provider: String,
    request_id: String,
    /// The call's inbox: names this attempt, unlike the request id which a
    /// retry shares.
    call_id: String,
    /// Known once the worker accepted; until then every worker of the
    /// provider is told.
    worker_id: Option<String>,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let subject = match &self.worker_id {
            Some(worker) => self.inner.subjects.ctl(worker),
            None => self.inner.subjects.cancel(&self.provider),
        };
        let mut headers = HeaderMap::new();
        headers.insert(CALL_HEADER, self.call_id.as_str());
        let payload = Bytes::from(
            CancelRequest {
                request_id: self.request_id.clone(),
            }
            .encode_to_vec(),
        );
        // Drop cannot await; outside a runtime (process teardown) the worker
        // still learns of it from the no-responders answer to its next event.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let client = self.inner.client.clone();
        let request_id = self.request_id.clone();
        runtime.spawn(async move {
            if let Err(e) = client.publish_with_headers(subject, headers, payload).await {
                tracing::debug!(request_id, error = %e, "publishing a cancel failed");
            }
        });
    }
}
