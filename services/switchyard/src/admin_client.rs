//! The CLI's side of the admin API (`switchyard usage`, `switchyard
//! keys`): one request to a running gateway with the admin token, and its
//! error rendered as the gateway worded it.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// Sends `req` with `SWITCHYARD_ADMIN_TOKEN` as bearer token (when set)
/// and returns the body of a successful answer.
pub async fn send(req: reqwest::RequestBuilder, gateway: &str) -> Result<String> {
    Ok(exchange(req, gateway, None).await?.0)
}

/// Runs a CLI command's future on a small runtime: its output on stdout,
/// or its error on stderr and a failing exit code.
pub fn run(f: impl Future<Output = Result<String>>) -> ExitCode {
    use std::io::Write;
    let out = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|rt| rt.block_on(f));
    match out {
        Ok(text) => {
            let _ = std::io::stdout().write_all(text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "switchyard: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Like [`send`], for a paged answer: the body and the header `next_header`
/// naming where the next page starts (absent on the last page).
pub async fn send_page(
    req: reqwest::RequestBuilder,
    gateway: &str,
    next_header: &str,
) -> Result<(String, Option<String>)> {
    exchange(req, gateway, Some(next_header)).await
}

/// One request with the admin token: the body of a successful answer and,
/// when asked, the value of `header`; an error worded as the gateway did.
async fn exchange(
    req: reqwest::RequestBuilder,
    gateway: &str,
    header: Option<&str>,
) -> Result<(String, Option<String>)> {
    let req = match std::env::var(switchyard_router::ADMIN_TOKEN_ENV) {
        Ok(token) if !token.is_empty() => req.bearer_auth(token),
        _ => req,
    };
    let res = req
        .send()
        .await
        .with_context(|| format!("cannot reach the gateway at {gateway}"))?;
    let status = res.status();
    let next = header
        .and_then(|h| res.headers().get(h))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = res.text().await.context("cannot read the answer")?;
    if !status.is_success() {
        let message = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or(body);
        bail!("the gateway answered {status}: {message}");
    }
    Ok((body, next))
}
