//! The OpenAI upstream double as a standalone process, for the Python SDK
//! tests and benchmarks: `upstream-double [ADDR]` (default 127.0.0.1:0).
//! Prints `listening on http://ADDR/v1` on stdout once it accepts connections.

use std::io::Write;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let double =
        switchyard_e2e::double::Double::start_on(addr.parse().map_err(std::io::Error::other)?)
            .await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {}", double.base_url())?;
    out.flush()?;
    drop(out);
    double.serve_forever().await;
    Ok(())
}
