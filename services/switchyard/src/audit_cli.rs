//! `switchyard audit export`: the audit trail of a running gateway (every
//! request its ledger recorded), through the admin API
//! (`GET /admin/v1/audit`, `SWITCHYARD_ADMIN_TOKEN`), page after page until
//! the range is exhausted, to stdout or a file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};

/// The header an audit page names the next one in (the router's
/// `admin_usage::NEXT_CURSOR_HEADER`; the router does not export it).
const NEXT_CURSOR_HEADER: &str = "x-switchyard-next-cursor";

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Every recorded request in a time range, oldest first: one JSON
    /// object per line, or CSV.
    Export(ExportArgs),
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The gateway's HTTP address.
    #[arg(long, env = "SWITCHYARD_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// From this long ago (`24h`, `7d`) or an RFC 3339 time.
    #[arg(long, default_value = "24h")]
    since: String,
    /// Until this RFC 3339 time (or span back from now). Absent: now.
    #[arg(long)]
    until: Option<String>,
    /// Only this caller: a key id as `switchyard keys` shows it, or as
    /// recorded (`key:<id>`, `jwt:<subject>`).
    #[arg(long)]
    key: Option<String>,
    /// Only this team.
    #[arg(long)]
    team: Option<String>,
    /// Only this end user.
    #[arg(long)]
    user: Option<String>,
    /// The model the client asked for.
    #[arg(long)]
    model: Option<String>,
    /// `ok`, `client_closed` or an error code (`rate_limited`, ...).
    #[arg(long)]
    outcome: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    format: Format,
    /// Write here instead of stdout. The file appears only once the
    /// export is complete (it is written as FILE.partial, then renamed).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Records per request to the gateway (at most 100,000).
    #[arg(long, default_value_t = 10_000)]
    page_size: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    /// One JSON object per line.
    Jsonl,
    /// RFC 4180, one header line.
    Csv,
}

impl Format {
    fn as_str(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
        }
    }
}

pub fn audit(args: &AuditArgs) -> ExitCode {
    match &args.command {
        AuditCommand::Export(args) => crate::admin_client::run(export(args)),
    }
}

async fn export(args: &ExportArgs) -> Result<String> {
    // Both ends fixed once, here: every page then asks for the same range,
    // and records arriving during the export do not stretch it.
    let now = switchyard_ledger::Timestamp::now();
    let from = switchyard_ledger::parse_time(&args.since, now)
        .with_context(|| format!("--since `{}`", args.since))?;
    let to = match &args.until {
        Some(u) => {
            switchyard_ledger::parse_time(u, now).with_context(|| format!("--until `{u}`"))?
        }
        None => now,
    };
    if from >= to {
        bail!("--since {from} is not before --until {to}");
    }
    let base = url::Url::parse(&args.url)
        .with_context(|| format!("`{}` is not a URL", args.url))?
        .join("/admin/v1/audit")?;
    match &args.output {
        None => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            pages(args, &base, from, to, &mut out).await?;
            out.flush().context("cannot write to stdout")?;
        }
        Some(path) => to_file(args, &base, from, to, path).await?,
    }
    Ok(String::new())
}

/// Into `path` by way of `path.partial`, so a file under the asked name is
/// always a whole export.
async fn to_file(
    args: &ExportArgs,
    base: &url::Url,
    from: switchyard_ledger::Timestamp,
    to: switchyard_ledger::Timestamp,
    path: &Path,
) -> Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let file = std::fs::File::create(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let written = async {
        pages(args, base, from, to, &mut out).await?;
        out.flush()
            .with_context(|| format!("cannot write {}", partial.display()))?;
        out.get_ref()
            .sync_all()
            .with_context(|| format!("cannot write {}", partial.display()))
    }
    .await;
    drop(out);
    match written {
        Ok(()) => std::fs::rename(&partial, path)
            .with_context(|| format!("cannot rename {} to {}", partial.display(), path.display())),
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

/// Follows the cursor from the first page to the last, writing each as it
/// arrives: memory stays one page whatever the export's size.
async fn pages(
    args: &ExportArgs,
    base: &url::Url,
    from: switchyard_ledger::Timestamp,
    to: switchyard_ledger::Timestamp,
    out: &mut impl Write,
) -> Result<()> {
    let client = reqwest::Client::new();
    let mut after: Option<String> = None;
    let mut first = true;
    loop {
        let mut url = base.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("from", &from.to_string());
            q.append_pair("to", &to.to_string());
            q.append_pair("format", args.format.as_str());
            q.append_pair("limit", &args.page_size.to_string());
            let filters = [
                ("key", &args.key),
                ("team", &args.team),
                ("user", &args.user),
                ("model", &args.model),
                ("outcome", &args.outcome),
            ];
            for (name, value) in filters {
                if let Some(v) = value {
                    q.append_pair(name, v);
                }
            }
            if let Some(a) = &after {
                q.append_pair("after", a);
            }
        }
        let (body, next) =
            crate::admin_client::send_page(client.get(url), &args.url, NEXT_CURSOR_HEADER).await?;
        // Every CSV page starts with the header; the export has it once.
        let chunk = match (args.format, first) {
            (Format::Csv, false) => body.split_once("\r\n").map_or("", |(_, rest)| rest),
            _ => body.as_str(),
        };
        out.write_all(chunk.as_bytes())
            .context("cannot write the export")?;
        first = false;
        match next {
            // A cursor that does not move would loop forever.
            Some(n) if after.as_deref() != Some(n.as_str()) => after = Some(n),
            Some(n) => bail!("the gateway repeated the cursor `{n}`"),
            None => return Ok(()),
        }
    }
}
