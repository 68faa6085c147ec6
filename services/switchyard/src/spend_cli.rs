//! `switchyard pricing show`, `switchyard usage` and `switchyard
//! ledger-writer`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::Value;
use switchyard_bus::nats::{NatsBus, NatsOptions};
use switchyard_config::Config;
use tokio_util::sync::CancellationToken;

#[derive(Subcommand, Debug)]
pub enum PricingCommand {
    /// The price entry that applies to MODEL, how it was matched, every
    /// rate, tier and time window, and where the figures come from.
    Show {
        model: String,
        /// The provider kind (`openai`, `anthropic`, `bedrock`, ...) or a
        /// provider name from `--config`. Absent: every provider listing
        /// the model.
        #[arg(long, short)]
        provider: Option<String>,
        /// Apply this config's `pricing.models` overrides (and resolve its
        /// provider names).
        #[arg(long, short, env = "SWITCHYARD_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
pub struct UsageArgs {
    /// The gateway's HTTP address.
    #[arg(long, env = "SWITCHYARD_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Comma-separated: key, team, user, model, provider, served_model, day.
    #[arg(long, short, value_delimiter = ',')]
    group_by: Vec<String>,
    /// From this long ago (`24h`, `7d`) or an RFC 3339 time.
    #[arg(long, default_value = "30d")]
    since: String,
    /// Until this RFC 3339 time (or span back from now). Absent: now.
    #[arg(long)]
    until: Option<String>,
    /// `dimension=value`, e.g. `team=research`; repeatable.
    #[arg(long = "filter", short = 'f')]
    filters: Vec<String>,
    /// `table`, `csv` (chargeback) or `json`.
    #[arg(long, default_value = "table")]
    format: String,
    /// The records themselves instead of grouped totals.
    #[arg(long)]
    records: bool,
    /// With `--records`: at most this many, oldest first (the whole trail:
    /// `switchyard audit export`).
    #[arg(long, default_value_t = 1000)]
    limit: usize,
}

pub fn pricing(command: &PricingCommand) -> ExitCode {
    let PricingCommand::Show {
        model,
        provider,
        config,
    } = command;
    let table = match switchyard_pricing::PriceTable::bundled() {
        Ok(t) => t,
        Err(e) => return fail(&format!("the bundled price table is broken: {e}")),
    };
    let mut kind = provider.clone();
    let table = match &config {
        None => table,
        Some(path) => {
            let config = match Config::load(path) {
                Ok(c) => c,
                Err(e) => return fail(&e.to_string()),
            };
            // A provider name from the config means its kind.
            if let Some(p) = provider.as_deref().and_then(|p| config.provider(p)) {
                kind = Some(p.kind.as_str().to_owned());
            }
            match table.with_overrides(&config.pricing.models, &path.display().to_string()) {
                Ok(t) => t,
                Err(e) => return fail(&e.to_string()),
            }
        }
    };
    let explanation = table.explain(kind.as_deref(), model);
    let _ = write!(std::io::stdout(), "{explanation}");
    if !explanation.found.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

fn fail(message: &str) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "switchyard: {message}");
    ExitCode::FAILURE
}

pub fn usage(args: &UsageArgs) -> ExitCode {
    crate::admin_client::run(fetch_usage(args))
}

async fn fetch_usage(args: &UsageArgs) -> Result<String> {
    let path = if args.records {
        "/admin/v1/usage/records"
    } else {
        "/admin/v1/usage"
    };
    let mut url = url::Url::parse(&args.url)
        .with_context(|| format!("`{}` is not a URL", args.url))?
        .join(path)?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("from", &args.since);
        if let Some(until) = &args.until {
            q.append_pair("to", until);
        }
        if !args.group_by.is_empty() && !args.records {
            q.append_pair("group_by", &args.group_by.join(","));
        }
        for f in &args.filters {
            let Some((k, v)) = f.split_once('=') else {
                bail!("--filter `{f}` is not `dimension=value`");
            };
            q.append_pair(k.trim(), v.trim());
        }
        if args.records {
            q.append_pair("limit", &args.limit.to_string());
        }
        match args.format.as_str() {
            "csv" => {
                q.append_pair("format", "csv");
            }
            "json" | "table" => {}
            other => bail!("--format `{other}` is not table, csv or json"),
        }
    }
    let body = crate::admin_client::send(reqwest::Client::new().get(url), &args.url).await?;
    match args.format.as_str() {
        "table" => {
            let v: Value = serde_json::from_str(&body).context("the answer is not JSON")?;
            Ok(table(&v, args.records))
        }
        _ => Ok(body),
    }
}

/// Rows (or records) as aligned columns, with a total line for rows.
fn table(v: &Value, records: bool) -> String {
    let (items, totals) = if records {
        (v["records"].as_array().cloned().unwrap_or_default(), None)
    } else {
        (
            v["rows"].as_array().cloned().unwrap_or_default(),
            Some(v["totals"].clone()),
        )
    };
    let columns: Vec<String> = match items.first().or(totals.as_ref()) {
        Some(Value::Object(o)) => o.keys().cloned().collect(),
        _ => return "no usage in this range\n".to_owned(),
    };
    let cell = |row: &Value, c: &str| match &row[c] {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut rows: Vec<Vec<String>> = items
        .iter()
        .map(|r| columns.iter().map(|c| cell(r, c)).collect())
        .collect();
    if let Some(t) = &totals {
        rows.push(
            columns
                .iter()
                .map(|c| match &t[c] {
                    Value::Null => String::new(),
                    _ => cell(t, c),
                })
                .collect(),
        );
        if let Some(first) = rows.last_mut().and_then(|r| r.first_mut())
            && first.is_empty()
        {
            "TOTAL".clone_into(first);
        }
    }
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(&mut out, &columns);
    for r in &rows {
        line(&mut out, r);
    }
    out
}

pub async fn ledger_writer(
    config: &Config,
    consumer: &str,
    shutdown: CancellationToken,
) -> Result<()> {
    let Some(bus) = &config.bus else {
        bail!("`switchyard ledger-writer` needs `bus` (the usage stream is on its NATS)");
    };
    let Some(pg) = &config.ledger.postgres else {
        bail!("`switchyard ledger-writer` needs `ledger.postgres.url`");
    };
    let nats = NatsBus::connect(NatsOptions::from_config(bus, "switchyard-ledger-writer"))
        .await
        .with_context(|| format!("cannot connect to NATS at {}", bus.nats_url))?;
    let settings = switchyard_router::spend::stream_settings(config);
    tracing::info!(stream = %settings.stream, consumer, "ledger writer starting");
    let w = &config.ledger.writer;
    let pg = switchyard_ledger::PgSettings {
        batch_size: w.batch_size,
        batch_wait: w.batch_wait,
        ack_wait: w.ack_wait,
        ..switchyard_ledger::PgSettings::new(pg.url.expose())
    };
    switchyard_ledger::run_writer(nats.client(), settings, pg, consumer, shutdown)
        .await
        .context("the ledger writer stopped")?;
    nats.close().await;
    Ok(())
}
