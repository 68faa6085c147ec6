//! An upstream double as a standalone process, for the Python SDK tests and
//! benchmarks:
//!
//! ```text
//! upstream-double [--wire openai|anthropic|gemini] [--script SCRIPT] [ADDR]
//! ```
//!
//! `ADDR` defaults to 127.0.0.1:0. Prints `listening on <base url>` on
//! stdout once it accepts connections: `http://ADDR/v1` for `openai` and
//! `anthropic`, `http://ADDR/v1beta` for `gemini` (each kind's `base_url`).
//!
//! - `--wire openai` (the default): the OpenAI double of
//!   `tests/support/double.rs`, scripted by the model each request names
//!   (`tool-call`, `error-429`, ...); it takes no `--script`.
//! - `--wire anthropic` / `--wire gemini`: the Messages API and Gemini
//!   doubles of switchyard-providers (`anthropic::double`, `gemini::double`,
//!   the `doubles` feature), which speak those wire formats (JSON, SSE
//!   framing, tool calls) as the providers' own tests see them. One script
//!   for every request: `converse` (the default) follows the request — JSON
//!   of the schema for a structured-output request, `tool said: <result>`
//!   after a tool's result, a call of the first declared tool with
//!   `{"city": "Paris"}`, else the text `Hello there, friend! How can I
//!   help?` (streamed in pieces, with usage); `answer` always that text;
//!   `tool-call` always a call of `get_weather`. `GET /_double/stats` reports
//!   the number of requests and the last request's body (Gemini: and path).

use std::io::Write;
use std::net::SocketAddr;

use switchyard_providers::test_support::Script;
use switchyard_providers::{anthropic, gemini};

#[derive(Clone, Copy, PartialEq)]
enum Wire {
    OpenAi,
    Anthropic,
    Gemini,
}

fn usage(message: &str) -> std::io::Error {
    std::io::Error::other(format!(
        "{message}\nusage: upstream-double [--wire openai|anthropic|gemini] \
         [--script converse|answer|tool-call] [ADDR]"
    ))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut wire = Wire::OpenAi;
    let mut script = None;
    let mut addr = "127.0.0.1:0".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--wire" => {
                wire = match args.next().as_deref() {
                    Some("openai") => Wire::OpenAi,
                    Some("anthropic") => Wire::Anthropic,
                    Some("gemini") => Wire::Gemini,
                    other => {
                        return Err(usage(&format!(
                            "unknown --wire {}",
                            other.unwrap_or("(none)")
                        )));
                    }
                }
            }
            "--script" => {
                script = Some(match args.next().as_deref() {
                    Some("converse") => Script::<()>::Converse,
                    Some("answer") => Script::Answer,
                    Some("tool-call") => Script::ToolCall,
                    other => {
                        return Err(usage(&format!(
                            "unknown --script {}",
                            other.unwrap_or("(none)")
                        )));
                    }
                })
            }
            a if a.starts_with("--") => return Err(usage(&format!("unknown option {a}"))),
            a => a.clone_into(&mut addr),
        }
    }
    let addr: SocketAddr = addr.parse().map_err(std::io::Error::other)?;
    if wire == Wire::OpenAi && script.is_some() {
        return Err(usage(
            "--script is for --wire anthropic|gemini: the OpenAI double is scripted by model name",
        ));
    }
    let script = script.unwrap_or(Script::Converse);
    match wire {
        Wire::OpenAi => {
            let double = switchyard_e2e::double::Double::start_on(addr).await?;
            listening(&double.base_url())?;
            double.serve_forever().await;
        }
        Wire::Anthropic => {
            let (double, _closed) =
                anthropic::double::Double::start_on(addr, for_events(script)).await?;
            listening(&double.base_url())?;
            std::future::pending::<()>().await;
        }
        Wire::Gemini => {
            let (double, _closed) =
                gemini::double::Double::start_on(addr, for_events(script)).await?;
            listening(&double.base_url())?;
            std::future::pending::<()>().await;
        }
    }
    Ok(())
}

/// One of the event-free scripts above for a wire whose events are `E`.
fn for_events<E>(script: Script<()>) -> Script<E> {
    match script {
        Script::Answer => Script::Answer,
        Script::ToolCall => Script::ToolCall,
        _ => Script::Converse,
    }
}

fn listening(base_url: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {base_url}")?;
    out.flush()
}
