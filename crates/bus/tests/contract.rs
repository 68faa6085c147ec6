//! The bus contract, written once and run against both implementations
//! ([`InProcessBus`] and [`NatsBus`] over a real `nats-server` per test),
//! followed by the cases only NATS has: workers and routers that die,
//! workers that never accept, and cancels that overtake their request.
//!
//! Ordering between caller and worker is forced with explicit signals
//! (channels), never with sleeps.

// Tests may panic on the impossible: that is how they fail.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::Client;
use futures_util::StreamExt;
use prost::Message as _;
use switchyard_bus::inproc::InProcessBus;
use switchyard_bus::nats::{CALL_HEADER, NatsBus, NatsOptions, Subjects};
use switchyard_bus::{Bus, BusError, Call, Event, Headers, Job, JobStream};
use switchyard_e2e::nats::NatsServer;
use switchyard_proto::bus::v1::{CancelRequest, StreamEnd, WorkRequest};
use switchyard_proto::gateway::v1::{ChatChunk, ChatResult};
use tokio::sync::{mpsc, oneshot};

/// A test that takes longer than this hangs: fail it instead.
const TEST_DEADLINE: Duration = Duration::from_secs(30);
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
const HEARTBEAT: Duration = Duration::from_millis(200);
/// What the caller waits in silence before declaring a worker lost.
const LOST_AFTER: Duration = Duration::from_millis(600);

// ---------------------------------------------------------------------------
// Environments

enum Env {
    InProc(InProcessBus),
    Nats(NatsServer),
}

impl Env {
    fn inproc() -> Self {
        Env::InProc(InProcessBus::new())
    }

    fn nats() -> Self {
        Env::Nats(NatsServer::start().expect("nats-server"))
    }

    /// The bus as one process sees it; on NATS every call gives a separate
    /// connection, like separate router and worker processes.
    async fn bus(&self, name: &str) -> Arc<dyn Bus> {
        match self {
            Env::InProc(bus) => Arc::new(bus.clone()),
            Env::Nats(server) => Arc::new(connect(server, name).await),
        }
    }
}

fn options(server: &NatsServer, name: &str) -> NatsOptions {
    NatsOptions {
        ack_timeout: ACK_TIMEOUT,
        heartbeat_interval: HEARTBEAT,
        ..NatsOptions::new(server.url(), name)
    }
}

async fn connect(server: &NatsServer, name: &str) -> NatsBus {
    NatsBus::connect(options(server, name))
        .await
        .expect("connect to the test nats-server")
}

/// A plain client, for playing a misbehaving peer or spying on subjects.
async fn raw_client(server: &NatsServer) -> Client {
    async_nats::connect(server.url())
        .await
        .expect("raw NATS connection")
}

/// Returns once the server has processed this client's earlier
/// subscriptions: a message to ourselves comes back only after them.
async fn confirmed(client: &Client) {
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.expect("subscribe");
    client
        .publish(inbox, Vec::new().into())
        .await
        .expect("publish");
    sub.next().await.expect("round trip through the server");
}

/// A runtime standing in for another process: shutting it down drops every
/// task and socket at once, like the process dying.
struct OtherProcess(Option<tokio::runtime::Runtime>);

impl OtherProcess {
    fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        OtherProcess(Some(runtime))
    }

    fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        if let Some(runtime) = &self.0 {
            runtime.spawn(fut);
        }
    }

    fn kill(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for OtherProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_DEADLINE, fut)
        .await
        .expect("test did not finish in time")
}

// ---------------------------------------------------------------------------
// Messages

fn request(id: &str, provider: &str) -> WorkRequest {
    WorkRequest {
        request_id: id.to_owned(),
        provider: provider.to_owned(),
        upstream_model: "model-x".to_owned(),
        attempt: 1,
        ..Default::default()
    }
}

fn stream_request(id: &str, provider: &str) -> WorkRequest {
    WorkRequest {
        stream: true,
        ..request(id, provider)
    }
}

fn result(id: &str) -> Event {
    Event::Result(ChatResult {
        id: id.to_owned(),
        ..Default::default()
    })
}

fn chunk(n: usize) -> Event {
    Event::Chunk(ChatChunk {
        id: format!("chunk-{n}"),
        ..Default::default()
    })
}

fn end() -> Event {
    Event::End(StreamEnd::default())
}

async fn call(bus: &dyn Bus, request: WorkRequest, headers: Headers) -> Call {
    match bus.call(request, headers).await {
        Ok(call) => call,
        Err(e) => panic!("call failed: {e}"),
    }
}

async fn call_err(bus: &dyn Bus, request: WorkRequest) -> BusError {
    match bus.call(request, Vec::new()).await {
        Ok(_) => panic!("call succeeded; expected an error"),
        Err(e) => e,
    }
}

async fn next_job(jobs: &mut JobStream) -> Job {
    jobs.next().await.expect("job stream ended")
}

async fn next_event(call: &mut Call) -> Event {
    call.next()
        .await
        .expect("call ended early")
        .expect("call failed")
}

fn result_id(event: Event) -> String {
    match event {
        Event::Result(result) => result.id,
        other => panic!("expected a result, got {other:?}"),
    }
}

fn chunk_id(event: Event) -> String {
    match event {
        Event::Chunk(chunk) => chunk.id,
        other => panic!("expected a chunk, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// The contract, for every implementation

async fn unary_result_round_trip(env: &Env) {
    let worker = env.bus("worker").await;
    let mut jobs = worker.serve("echo", "w1").await.expect("serve");
    let caller = env.bus("router").await;

    let served = tokio::spawn(async move {
        let job = next_job(&mut jobs).await;
        job.reply.send(result("res-1")).await.expect("send result");
        // Past the terminal event nobody listens.
        assert!(job.reply.send(chunk(9)).await.is_err());
        job.request
    });

    let mut call = call(&*caller, request("req-1", "echo"), Vec::new()).await;
    assert_eq!(result_id(next_event(&mut call).await), "res-1");
    assert!(
        call.next().await.is_none(),
        "a call ends after its terminal event"
    );
    assert_eq!(served.await.expect("worker task"), request("req-1", "echo"));
}

async fn streamed_chunks_arrive_in_order_and_incrementally(env: &Env) {
    let worker = env.bus("worker").await;
    let mut jobs = worker.serve("echo", "w1").await.expect("serve");
    let caller = env.bus("router").await;
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<usize>();

    let worker_task = tokio::spawn(async move {
        let job = next_job(&mut jobs).await;
        assert!(job.request.stream);
        for n in 0..3 {
            job.reply.send(chunk(n)).await.expect("send chunk");
            // The next chunk only once the caller holds this one: events
            // must not be held back until the end.
            assert_eq!(seen_rx.recv().await, Some(n));
        }
        job.reply.send(end()).await.expect("send end");
    });

    let mut call = call(&*caller, stream_request("req-s", "echo"), Vec::new()).await;
    for n in 0..3 {
        assert_eq!(chunk_id(next_event(&mut call).await), format!("chunk-{n}"));
        seen_tx.send(n).expect("worker waits");
    }
    assert!(matches!(next_event(&mut call).await, Event::End(_)));
    assert!(call.next().await.is_none());
    worker_task.await.expect("worker task");
}

async fn no_worker_means_no_responders_at_once(env: &Env) {
    let caller = env.bus("router").await;
    let started = Instant::now();
    let err = call_err(&*caller, request("req-n", "nobody")).await;
    assert_eq!(err, BusError::NoResponders("nobody".to_owned()));
    assert!(
        started.elapsed() < ACK_TIMEOUT,
        "NoResponders must not wait for the ack timeout (took {:?})",
        started.elapsed()
    );
}

async fn workers_of_a_provider_share_the_work(env: &Env) {
    const CALLS: usize = 20;
    let (served_tx, mut served_rx) = mpsc::unbounded_channel::<(String, String)>();
    for name in ["w1", "w2"] {
        let bus = env.bus(name).await;
        let mut jobs = bus.serve("shared", name).await.expect("serve");
        let served_tx = served_tx.clone();
        tokio::spawn(async move {
            let _bus = bus;
            while let Some(job) = jobs.next().await {
                let _ = served_tx.send((name.to_owned(), job.request.request_id.clone()));
                let _ = job.reply.send(result(name)).await;
            }
        });
    }
    drop(served_tx);
    let caller = env.bus("router").await;

    let mut answered_by: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..CALLS {
        let mut call = call(&*caller, request(&format!("req-{i}"), "shared"), Vec::new()).await;
        *answered_by
            .entry(result_id(next_event(&mut call).await))
            .or_default() += 1;
    }
    let mut served = Vec::new();
    for _ in 0..CALLS {
        served.push(served_rx.recv().await.expect("a served job"));
    }
    let ids: BTreeSet<&str> = served.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(
        ids.len(),
        CALLS,
        "each job reaches exactly one worker: {served:?}"
    );
    assert!(served_rx.try_recv().is_err(), "no job was served twice");
    assert_eq!(
        answered_by.keys().map(String::as_str).collect::<Vec<_>>(),
        ["w1", "w2"],
        "both workers get work: {answered_by:?}"
    );
}

async fn dropping_the_call_cancels_the_job(env: &Env) {
    let worker = env.bus("worker").await;
    let mut jobs = worker.serve("echo", "w1").await.expect("serve");
    let caller = env.bus("router").await;

    let worker_task = tokio::spawn(async move {
        let job = next_job(&mut jobs).await;
        job.reply.send(chunk(0)).await.expect("send chunk");
        job.cancelled.cancelled().await;
        assert!(
            job.reply.send(chunk(1)).await.is_err(),
            "a cancelled job's events go nowhere"
        );
    });

    let mut call = call(&*caller, stream_request("req-d", "echo"), Vec::new()).await;
    assert_eq!(chunk_id(next_event(&mut call).await), "chunk-0");
    drop(call);
    worker_task
        .await
        .expect("the worker observes the cancellation");
}

async fn trace_headers_reach_the_worker(env: &Env) {
    let worker = env.bus("worker").await;
    let mut jobs = worker.serve("echo", "w1").await.expect("serve");
    let caller = env.bus("router").await;
    let headers: Headers = vec![
        (
            "traceparent".to_owned(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
        ),
        ("tracestate".to_owned(), "rojo=00f067aa0ba902b7".to_owned()),
    ];

    let worker_task = tokio::spawn(async move {
        let job = next_job(&mut jobs).await;
        job.reply.send(result("ok")).await.expect("send result");
        job.headers
    });
    let mut call = call(&*caller, request("req-h", "echo"), headers.clone()).await;
    assert_eq!(result_id(next_event(&mut call).await), "ok");
    let received = worker_task.await.expect("worker task");
    for header in &headers {
        assert!(
            received.contains(header),
            "{header:?} missing from {received:?}"
        );
    }
}

async fn stop_receiving_hands_new_work_to_the_others(env: &Env) {
    let w1_bus = env.bus("w1").await;
    let mut w1 = w1_bus.serve("p", "w1").await.expect("serve w1");
    let caller = env.bus("router").await;

    let answer_of = |id: &'static str| {
        let caller = caller.clone();
        tokio::spawn(async move {
            let mut call = call(&*caller, request(id, "p"), Vec::new()).await;
            result_id(next_event(&mut call).await)
        })
    };
    // w1 is the only worker: this job is w1's.
    let call_a = answer_of("req-a");
    let job_a = next_job(&mut w1).await;

    let w2_bus = env.bus("w2").await;
    let mut w2 = w2_bus.serve("p", "w2").await.expect("serve w2");
    w1.stop_receiving().await;

    let call_b = answer_of("req-b");
    let job_b = next_job(&mut w2).await;
    assert_eq!(job_b.request.request_id, "req-b");
    assert!(
        w1.next().await.is_none(),
        "a stopped stream ends once drained"
    );

    // Jobs taken before stopping are still answered.
    job_a.reply.send(result("from-w1")).await.expect("answer a");
    job_b.reply.send(result("from-w2")).await.expect("answer b");
    assert_eq!(call_a.await.expect("call a"), "from-w1");
    assert_eq!(call_b.await.expect("call b"), "from-w2");

    w2.stop_receiving().await;
    assert_eq!(
        call_err(&*caller, request("req-c", "p")).await,
        BusError::NoResponders("p".to_owned())
    );
}

async fn a_job_dropped_unanswered_means_worker_lost(env: &Env) {
    let worker = env.bus("worker").await;
    let mut jobs = worker.serve("echo", "w1").await.expect("serve");
    let caller = env.bus("router").await;

    let worker_task = tokio::spawn(async move {
        drop(next_job(&mut jobs).await);
        jobs
    });
    let mut call = call(&*caller, request("req-l", "echo"), Vec::new()).await;
    match call.next().await {
        Some(Err(BusError::WorkerLost { provider, .. })) => assert_eq!(provider, "echo"),
        other => panic!("expected WorkerLost, got {other:?}"),
    }
    assert!(call.next().await.is_none());
    drop(worker_task.await.expect("worker task"));
}

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod in_process {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let env = super::Env::inproc();
                    super::within(super::$case(&env)).await;
                }
            )*
        }

        mod over_nats {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let env = super::Env::nats();
                    super::within(super::$case(&env)).await;
                }
            )*
        }
    };
}

contract!(
    unary_result_round_trip,
    streamed_chunks_arrive_in_order_and_incrementally,
    no_worker_means_no_responders_at_once,
    workers_of_a_provider_share_the_work,
    dropping_the_call_cancels_the_job,
    trace_headers_reach_the_worker,
    stop_receiving_hands_new_work_to_the_others,
    a_job_dropped_unanswered_means_worker_lost,
);

// ---------------------------------------------------------------------------
// NATS only

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_worker_that_dies_mid_job_is_lost_within_three_heartbeats() {
    let server = NatsServer::start().expect("nats-server");
    within(async {
        let mut worker_process = OtherProcess::new();
        let (ready_tx, ready_rx) = oneshot::channel();
        let opts = options(&server, "doomed-worker");
        worker_process.spawn(async move {
            let bus = NatsBus::connect(opts).await.expect("connect");
            let mut jobs = bus.serve("p", "doomed").await.expect("serve");
            let _ = ready_tx.send(());
            let job = next_job(&mut jobs).await;
            job.reply.send(chunk(0)).await.expect("send chunk");
            // Alive, heartbeating, never finishing: until the process dies.
            let _hold = (bus, jobs, job);
            std::future::pending::<()>().await;
        });
        ready_rx.await.expect("worker ready");

        let caller = connect(&server, "router").await;
        let mut call = call(&caller, stream_request("req-k", "p"), Vec::new()).await;
        assert_eq!(chunk_id(next_event(&mut call).await), "chunk-0");

        let killed = Instant::now();
        worker_process.kill();
        match call.next().await {
            Some(Err(BusError::WorkerLost { provider, .. })) => assert_eq!(provider, "p"),
            other => panic!("expected WorkerLost, got {other:?}"),
        }
        let took = killed.elapsed();
        assert!(
            took <= LOST_AFTER + Duration::from_secs(1),
            "lost worker noticed after {took:?}, expected about {LOST_AFTER:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_worker_that_never_accepts_is_lost_after_the_ack_timeout() {
    let server = NatsServer::start().expect("nats-server");
    within(async {
        let subjects = Subjects::new("switchyard");
        let raw = raw_client(&server).await;
        let mut silent = raw
            .queue_subscribe(subjects.work("p"), subjects.queue_group("p"))
            .await
            .expect("subscribe");
        let mut cancels = raw
            .subscribe(subjects.cancel("p"))
            .await
            .expect("subscribe");
        confirmed(&raw).await;

        let caller = connect(&server, "router").await;
        let started = Instant::now();
        match call_err(&caller, request("req-x", "p")).await {
            BusError::WorkerLost { provider, .. } => assert_eq!(provider, "p"),
            other => panic!("expected WorkerLost, got {other:?}"),
        }
        let waited = started.elapsed();
        assert!(
            waited >= ACK_TIMEOUT && waited < ACK_TIMEOUT + Duration::from_secs(2),
            "gave up after {waited:?}, ack timeout is {ACK_TIMEOUT:?}"
        );

        // The request did reach the silent worker, and giving up on it tells
        // every worker of the provider to drop exactly that call.
        let work = silent.next().await.expect("the request");
        let cancel = cancels.next().await.expect("a cancel");
        let decoded = CancelRequest::decode(cancel.payload).expect("CancelRequest");
        assert_eq!(decoded.request_id, "req-x");
        let call_id = cancel
            .headers
            .as_ref()
            .and_then(|h| h.get(CALL_HEADER))
            .map(|v| v.as_str().to_owned());
        assert_eq!(call_id, work.reply.map(|r| r.to_string()));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_request_cancelled_before_the_worker_took_it_is_not_worked_on() {
    let server = NatsServer::start().expect("nats-server");
    within(async {
        let worker = connect(&server, "worker").await;
        // Not polled yet: nothing gets accepted.
        let mut jobs = worker.serve("p", "w1").await.expect("serve");
        let spy = raw_client(&server).await;
        let mut cancels = spy
            .subscribe(Subjects::new("switchyard").cancel("p"))
            .await
            .expect("subscribe");
        confirmed(&spy).await;

        let caller = Arc::new(connect(&server, "router").await);
        assert!(matches!(
            call_err(&*caller, request("req-1", "p")).await,
            BusError::WorkerLost { .. }
        ));
        cancels.next().await.expect("the cancel went out");

        let second = {
            let caller = caller.clone();
            tokio::spawn(async move {
                let mut call = call(&*caller, request("req-2", "p"), Vec::new()).await;
                result_id(next_event(&mut call).await)
            })
        };
        // The worker hears the cancel on its own subscription, racing the
        // job stream: either it never yields req-1, or req-1 comes out
        // already cancelled.
        let mut job = next_job(&mut jobs).await;
        if job.request.request_id == "req-1" {
            job.cancelled.cancelled().await;
            job = next_job(&mut jobs).await;
        }
        assert_eq!(job.request.request_id, "req-2");
        assert!(!job.cancelled.is_cancelled());
        job.reply.send(result("second")).await.expect("answer");
        assert_eq!(second.await.expect("second call"), "second");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_stop_receiving_still_yields_jobs_already_delivered() {
    let server = NatsServer::start().expect("nats-server");
    within(async {
        let worker = connect(&server, "worker").await;
        let mut jobs = worker.serve("p", "w1").await.expect("serve");
        // A plain subscriber beside the queue group: once it has the
        // request, the server has also sent it down the worker's socket.
        let spy = raw_client(&server).await;
        let mut seen = spy
            .subscribe(Subjects::new("switchyard").work("p"))
            .await
            .expect("subscribe");
        confirmed(&spy).await;

        let caller = Arc::new(connect(&server, "router").await);
        let pending = {
            let caller = caller.clone();
            tokio::spawn(async move {
                let mut call = call(&*caller, request("req-q", "p"), Vec::new()).await;
                result_id(next_event(&mut call).await)
            })
        };
        seen.next().await.expect("request published");

        jobs.stop_receiving().await;
        let job = next_job(&mut jobs).await;
        assert_eq!(job.request.request_id, "req-q");
        assert!(jobs.next().await.is_none());
        job.reply.send(result("late")).await.expect("answer");
        assert_eq!(pending.await.expect("call"), "late");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_worker_notices_when_the_router_dies_mid_request() {
    let server = NatsServer::start().expect("nats-server");
    within(async {
        let worker = connect(&server, "worker").await;
        let mut jobs = worker.serve("p", "w1").await.expect("serve");

        let mut router_process = OtherProcess::new();
        let (got_chunk_tx, got_chunk_rx) = oneshot::channel();
        let opts = options(&server, "doomed-router");
        router_process.spawn(async move {
            let bus = NatsBus::connect(opts).await.expect("connect");
            let mut call = call(&bus, stream_request("req-r", "p"), Vec::new()).await;
            assert_eq!(chunk_id(next_event(&mut call).await), "chunk-0");
            let _ = got_chunk_tx.send(());
            // A dying process sends no cancel: only its connection goes.
            std::mem::forget(call);
            let _hold = bus;
            std::future::pending::<()>().await;
        });

        let job = next_job(&mut jobs).await;
        job.reply.send(chunk(0)).await.expect("send chunk");
        got_chunk_rx.await.expect("router got the chunk");
        let killed = Instant::now();
        router_process.kill();

        job.cancelled.cancelled().await;
        let took = killed.elapsed();
        assert!(
            took <= HEARTBEAT + Duration::from_secs(1),
            "worker noticed the router's death after {took:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn connect_fails_promptly_when_nothing_listens() {
    // A port that was free a moment ago; nothing answers there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let started = Instant::now();
    match NatsBus::connect(NatsOptions::new(
        format!("nats://127.0.0.1:{port}"),
        "nobody",
    ))
    .await
    {
        Err(BusError::Connection(_)) => {}
        Err(other) => panic!("expected a connection error, got {other}"),
        Ok(_) => panic!("connected to nothing"),
    }
    assert!(started.elapsed() < TEST_DEADLINE);
}
