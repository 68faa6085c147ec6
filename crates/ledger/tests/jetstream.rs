//! The usage stream against a private nats-server with JetStream.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{nats, new_id, record, stream_settings};
use futures_util::StreamExt;
use jiff::Timestamp;
use switchyard_ledger::{JetStreamSink, UsageSink, replay_since, subscribe};

async fn stream_messages(client: &async_nats::Client, name: &str) -> u64 {
    let js = async_nats::jetstream::new(client.clone());
    let mut stream = js.get_stream(name).await.unwrap();
    stream.info().await.unwrap().state.messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_published_twice_is_stored_once() {
    let (_server, client) = nats().await;
    let settings = stream_settings();
    let sink = JetStreamSink::new(client.clone(), settings.clone())
        .await
        .unwrap();
    let r = record(&new_id(), Timestamp::now());
    sink.record(r.clone());
    sink.record(r.clone());
    sink.flush().await.unwrap();
    // A second router publishing the same id (a retried request) too.
    let other = JetStreamSink::new(client.clone(), settings.clone())
        .await
        .unwrap();
    other.record(r.clone());
    other.record(record(&new_id(), Timestamp::now()));
    other.flush().await.unwrap();

    assert_eq!(stream_messages(&client, &settings.stream).await, 2);
    assert_eq!(sink.stats().stored, 2);
    assert_eq!(sink.stats().failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_see_records_of_every_router() {
    let (server, client) = nats().await;
    let settings = stream_settings();
    let live = subscribe(&client, &settings).await.unwrap();
    let a = JetStreamSink::new(
        async_nats::connect(server.url()).await.unwrap(),
        settings.clone(),
    )
    .await
    .unwrap();
    let b = JetStreamSink::new(
        async_nats::connect(server.url()).await.unwrap(),
        settings.clone(),
    )
    .await
    .unwrap();
    let mut want = BTreeSet::new();
    for i in 0..5 {
        let mut r = record(&format!("a-{i}"), Timestamp::now());
        r.router = "router-a".into();
        want.insert(r.request_id.clone());
        a.record(r);
        let mut r = record(&format!("b-{i}"), Timestamp::now());
        // Not a valid subject token: published under a cleaned-up name.
        r.router = "router b.2".into();
        want.insert(r.request_id.clone());
        b.record(r.clone());
        // The duplicate reaches subscribers only once.
        b.record(r);
    }
    a.flush().await.unwrap();
    b.flush().await.unwrap();
    let got: Vec<String> = tokio::time::timeout(
        Duration::from_secs(10),
        live.take(want.len())
            .map(|r| r.request_id)
            .collect::<Vec<_>>(),
    )
    .await
    .expect("all records arrive");
    assert_eq!(got.iter().cloned().collect::<BTreeSet<_>>(), want);
    assert_eq!(got.len(), want.len());
    assert_eq!(
        settings.subject_for("router b.2"),
        "switchyard.usage.router_b_2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_returns_only_records_after_the_time() {
    let (_server, client) = nats().await;
    let settings = stream_settings();
    assert!(
        replay_since(&client, &settings, Timestamp::now())
            .await
            .unwrap()
            .is_empty(),
        "no stream yet: no history"
    );
    let sink = JetStreamSink::new(client.clone(), settings.clone())
        .await
        .unwrap();
    // Old records: an hour ago, and just before `since` but published now.
    let hour_ago = Timestamp::now() - jiff::SignedDuration::from_hours(1);
    for i in 0..20 {
        sink.record(record(&format!("old-{i}"), hour_ago));
    }
    for i in 0..5 {
        sink.record(record(&format!("before-{i}"), Timestamp::now()));
    }
    sink.flush().await.unwrap();
    let since = Timestamp::now();
    let mut want = Vec::new();
    for i in 0..30 {
        let r = record(&format!("new-{i}"), Timestamp::now());
        want.push(r.request_id.clone());
        sink.record(r);
    }
    sink.flush().await.unwrap();

    let got: Vec<String> = replay_since(&client, &settings, since)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.request_id)
        .collect();
    // Publishes run concurrently, so the stream's order is not the
    // recording order.
    assert_eq!(got.len(), want.len(), "{got:?}");
    assert_eq!(
        got.into_iter().collect::<BTreeSet<_>>(),
        want.into_iter().collect::<BTreeSet<_>>(),
        "nothing before `since`"
    );

    // The replay consumer is gone, and replaying again gives the same.
    let again = replay_since(&client, &settings, since).await.unwrap();
    assert_eq!(again.len(), 30);
    let js = async_nats::jetstream::new(client.clone());
    let mut stream = js.get_stream(&settings.stream).await.unwrap();
    // Deleted when the replay ends, not left to expire.
    assert_eq!(stream.info().await.unwrap().state.consumer_count, 0);
}
