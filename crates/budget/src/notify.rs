//! Alert delivery: a log line always, a webhook POST and a NATS message
//! when configured.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{StatusCode, Url};
use tokio::sync::Notify;

use crate::event::{AlertEvent, AlertKind};

/// Log target of every alert.
pub const ALERT_TARGET: &str = "switchyard::alert";
/// Header carrying the alert id on webhook POSTs (receivers de-duplicate).
pub const ALERT_ID_HEADER: &str = "x-switchyard-alert-id";

#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: Url,
    /// Sent with every POST, e.g. `Authorization`.
    pub headers: Vec<(String, String)>,
    /// Per attempt.
    pub timeout: Duration,
}

/// When a webhook POST is tried again: on connection errors, timeouts, 429
/// and 5xx; never on other statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Pause after the first failure; doubled after each further one.
    pub first_delay: Duration,
    /// Cap on a pause, `Retry-After` included.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(16),
        }
    }
}

impl RetryPolicy {
    /// The pause after failed attempt `n` (1-based): exponential, with the
    /// upper half jittered so that routers that fail together do not retry
    /// together; at least what the receiver asked for with `Retry-After`.
    pub fn delay(&self, n: u32, retry_after: Option<Duration>) -> Duration {
        let doubled = self
            .first_delay
            .saturating_mul(2u32.saturating_pow(n.saturating_sub(1)))
            .min(self.max_delay);
        let half = doubled / 2;
        let jittered = half + half.mul_f64(fastrand::f64());
        jittered
            .max(retry_after.unwrap_or_default())
            .min(self.max_delay)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    #[error("webhook header `{0}` is not a valid HTTP header name")]
    HeaderName(String),
    #[error("the value of webhook header `{0}` is not a valid HTTP header value")]
    HeaderValue(String),
    #[error("webhook URL `{0}` is not http(s)")]
    Scheme(Url),
    #[error("cannot build the webhook HTTP client: {0}")]
    Client(String),
}

/// Sends alerts. Cheap to clone; clones share pending deliveries.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
    retry: RetryPolicy,
}

struct Inner {
    webhook: Option<WebhookTarget>,
    nats: Option<(async_nats::Client, String)>,
    pending: AtomicUsize,
    idle: Notify,
}

struct WebhookTarget {
    http: reqwest::Client,
    url: Url,
    headers: HeaderMap,
    timeout: Duration,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values are credentials: only the URL and subject show.
        f.debug_struct("Notifier")
            .field(
                "webhook",
                &self.inner.webhook.as_ref().map(|w| w.url.as_str()),
            )
            .field("nats_subject", &self.inner.nats.as_ref().map(|(_, s)| s))
            .finish()
    }
}

/// Counts a delivery as pending for as long as it lives, however it ends.
struct Pending(Arc<Inner>);

impl Drop for Pending {
    fn drop(&mut self) {
        if self.0.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Notifier {
    /// Alerts are always logged; `webhook` and `nats` (client, subject) add
    /// deliveries.
    pub fn new(
        webhook: Option<Webhook>,
        nats: Option<(async_nats::Client, String)>,
    ) -> Result<Self, NotifierError> {
        let webhook = webhook.map(WebhookTarget::new).transpose()?;
        Ok(Notifier {
            inner: Arc::new(Inner {
                webhook,
                nats,
                pending: AtomicUsize::new(0),
                idle: Notify::new(),
            }),
            retry: RetryPolicy::default(),
        })
    }

    /// Replaces the default retry policy of webhook POSTs (for alerts
    /// notified from then on, through this value and its clones).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Logs the alert at WARN (target [`ALERT_TARGET`]) and starts its
    /// deliveries in the background; never blocks. Needs a Tokio runtime
    /// for deliveries; without one the alert is only logged.
    pub fn notify(&self, event: AlertEvent) {
        log(&event);
        let inner = &self.inner;
        if inner.webhook.is_none() && inner.nats.is_none() {
            return;
        }
        let body = match serde_json::to_vec(&event) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                tracing::error!(target: ALERT_TARGET, id = %event.id, error = %e, "cannot serialize alert; not delivered");
                return;
            }
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::error!(target: ALERT_TARGET, id = %event.id, "no async runtime; alert only logged");
            return;
        };
        if inner.webhook.is_some() {
            let pending = self.pending();
            let (body, id, retry) = (body.clone(), event.id.clone(), self.retry);
            rt.spawn(async move {
                if let Some(hook) = &pending.0.webhook {
                    hook.deliver(&body, &id, &retry).await;
                }
            });
        }
        if inner.nats.is_some() {
            let pending = self.pending();
            let id = event.id;
            rt.spawn(async move {
                if let Some((client, subject)) = &pending.0.nats {
                    publish(client, subject, body, &id).await;
                }
            });
        }
    }

    fn pending(&self) -> Pending {
        self.inner.pending.fetch_add(1, Ordering::AcqRel);
        Pending(Arc::clone(&self.inner))
    }

    /// Waits until every delivery started so far has ended (delivered or
    /// given up): at shutdown, and in tests. A webhook that keeps failing
    /// holds this for the whole retry schedule (about 16 s by default plus
    /// the timeouts): bound it with `tokio::time::timeout` where that
    /// matters.
    pub async fn drain(&self) {
        loop {
            let idle = self.inner.idle.notified();
            tokio::pin!(idle);
            // Registered before the count is read, so a delivery ending in
            // between still wakes this.
            idle.as_mut().enable();
            if self.inner.pending.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }
}

fn log(e: &AlertEvent) {
    let message = match e.kind {
        AlertKind::BudgetExceeded => "budget exceeded",
        AlertKind::SpendSpike => "spend spike",
    };
    tracing::warn!(
        target: ALERT_TARGET,
        id = %e.id,
        kind = e.kind.as_str(),
        rule = %e.rule,
        dimension = ?e.dimension,
        value = e.value.as_deref().unwrap_or(""),
        spent = %e.spent,
        limit_or_threshold = %e.limit_or_threshold.map(|u| u.to_string()).unwrap_or_default(),
        baseline = %e.baseline.map(|u| u.to_string()).unwrap_or_default(),
        window_start = %e.window_start,
        window_end = %e.window_end,
        "{message}"
    );
}

async fn publish(client: &async_nats::Client, subject: &str, body: Bytes, id: &str) {
    let mut headers = async_nats::HeaderMap::new();
    // JetStream drops a second message with the same id within the
    // stream's duplicate window: routers that raise the same alert publish
    // it once, if the subject is captured by a stream.
    headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
    headers.insert("Content-Type", "application/json");
    let sent = client
        .publish_with_headers(subject.to_owned(), headers, body)
        .await;
    if let Err(e) = sent {
        tracing::warn!(target: ALERT_TARGET, %id, %subject, error = %e, "cannot publish alert to NATS");
        return;
    }
    // Deliveries count as done once the server has them.
    if let Err(e) = client.flush().await {
        tracing::warn!(target: ALERT_TARGET, %id, %subject, error = %e, "alert published but not flushed to NATS");
    }
}

impl WebhookTarget {
    fn new(w: Webhook) -> Result<Self, NotifierError> {
        if !matches!(w.url.scheme(), "http" | "https") {
            return Err(NotifierError::Scheme(w.url));
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &w.headers {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| NotifierError::HeaderName(name.clone()))?;
            let mut v = HeaderValue::from_str(value)
                .map_err(|_| NotifierError::HeaderValue(name.clone()))?;
            v.set_sensitive(true);
            headers.append(n, v);
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        // reqwest is built without a bundled TLS crypto provider and panics
        // building a client when none is installed; an error here means one
        // is installed already (the binary installs ring at start).
        let _already_installed = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| NotifierError::Client(e.to_string()))?;
        Ok(WebhookTarget {
            http,
            url: w.url,
            headers,
            timeout: w.timeout,
        })
    }

    async fn deliver(&self, body: &Bytes, id: &str, retry: &RetryPolicy) {
        let attempts = retry.attempts.max(1);
        for n in 1..=attempts {
            let mut req = self
                .http
                .post(self.url.clone())
                .headers(self.headers.clone())
                .timeout(self.timeout)
                .body(body.clone());
            if let Ok(v) = HeaderValue::from_str(id) {
                req = req.header(ALERT_ID_HEADER, v);
            }
            let retry_after = match req.send().await {
                Ok(res) if res.status().is_success() => {
                    tracing::debug!(target: ALERT_TARGET, %id, attempt = n, "alert delivered to webhook");
                    return;
                }
                Ok(res) if retryable(res.status()) => {
                    let after = retry_after(res.headers());
                    tracing::warn!(target: ALERT_TARGET, %id, attempt = n, status = res.status().as_u16(), "alert webhook failed");
                    after
                }
                Ok(res) => {
                    tracing::error!(target: ALERT_TARGET, %id, status = res.status().as_u16(), "alert webhook refused the alert; not retried");
                    return;
                }
                Err(e) => {
                    tracing::warn!(target: ALERT_TARGET, %id, attempt = n, error = %error_chain(&e), "alert webhook unreachable");
                    None
                }
            };
            if n == attempts {
                tracing::error!(target: ALERT_TARGET, %id, attempts, "alert webhook gave up");
                return;
            }
            tokio::time::sleep(retry.delay(n, retry_after)).await;
        }
    }
}

fn retryable(s: StatusCode) -> bool {
    s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error()
}

/// `Retry-After` in seconds (the HTTP-date form is rare for webhooks and is
/// ignored: the backoff applies).
fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let secs: u64 = h
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}

/// reqwest's top-level message ("error sending request") hides the cause.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_are_jittered_and_capped() {
        let p = RetryPolicy::default();
        for _ in 0..100 {
            let d1 = p.delay(1, None);
            assert!(
                d1 >= Duration::from_millis(250) && d1 <= Duration::from_millis(500),
                "{d1:?}"
            );
            let d3 = p.delay(3, None);
            assert!(
                d3 >= Duration::from_secs(1) && d3 <= Duration::from_secs(2),
                "{d3:?}"
            );
            let d9 = p.delay(9, None);
            assert!(
                d9 >= Duration::from_secs(8) && d9 <= Duration::from_secs(16),
                "{d9:?}"
            );
            assert_eq!(
                p.delay(1, Some(Duration::from_secs(5))),
                Duration::from_secs(5)
            );
            assert_eq!(
                p.delay(1, Some(Duration::from_secs(600))),
                Duration::from_secs(16)
            );
        }
    }
}
