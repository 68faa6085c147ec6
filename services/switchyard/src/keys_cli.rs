//! `switchyard keys create | list | show | revoke`: virtual keys on a
//! running gateway, through its admin API (`SWITCHYARD_ADMIN_TOKEN`).

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

#[derive(Args, Debug)]
pub struct KeysArgs {
    /// The gateway's HTTP address.
    #[arg(
        long,
        env = "SWITCHYARD_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    /// Print the gateway's JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: KeysCommand,
}

// Parsed once per run: the size of the `create` variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Issue a key. It is printed once: the gateway keeps only its hash.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        team: Option<String>,
        #[arg(long)]
        user: Option<String>,
        /// Roles for `auth.access` rules; repeatable or comma-separated.
        #[arg(long = "role", value_delimiter = ',')]
        roles: Vec<String>,
        /// Model patterns the key may use (`*` matches any run of
        /// characters); repeatable or comma-separated. None: any model the
        /// access rules allow.
        #[arg(long = "model", value_delimiter = ',')]
        models: Vec<String>,
        /// Requests per minute.
        #[arg(long)]
        rpm: Option<u64>,
        /// Tokens per minute.
        #[arg(long)]
        tpm: Option<u64>,
        #[arg(long)]
        max_body_bytes: Option<u64>,
        #[arg(long)]
        max_messages: Option<u32>,
        /// Ceiling on a request's `max_tokens`.
        #[arg(long)]
        max_tokens: Option<u32>,
        /// The key's own spend limit, in US dollars per `--budget-window`.
        #[arg(long)]
        budget_usd: Option<String>,
        /// `daily`, `weekly` or `monthly` (in `budgets.time_zone`).
        #[arg(long, default_value = "monthly")]
        budget_window: String,
        /// Expires this long from now (`30d`, `12h`).
        #[arg(long)]
        expires_in: Option<String>,
        /// `key=value`; repeatable.
        #[arg(long = "meta")]
        metadata: Vec<String>,
        /// Keep this key's prompts and answers (after the guardrails
        /// redacted them) in the audit trail.
        #[arg(long)]
        capture_payloads: bool,
    },
    /// Every key (revoked ones too), never their secrets.
    List,
    /// One key by id.
    Show { id: String },
    /// Revoke a key: refused on every router from the next request on.
    Revoke { id: String },
}

pub fn keys(args: &KeysArgs) -> std::process::ExitCode {
    crate::admin_client::run(call(args))
}

async fn call(args: &KeysArgs) -> Result<String> {
    let base =
        url::Url::parse(&args.url).with_context(|| format!("`{}` is not a URL", args.url))?;
    let client = reqwest::Client::new();
    let req = match &args.command {
        KeysCommand::Create {
            name,
            team,
            user,
            roles,
            models,
            rpm,
            tpm,
            max_body_bytes,
            max_messages,
            max_tokens,
            budget_usd,
            budget_window,
            expires_in,
            metadata,
            capture_payloads,
        } => {
            let mut meta = BTreeMap::new();
            for m in metadata {
                let Some((k, v)) = m.split_once('=') else {
                    bail!("--meta `{m}` is not `key=value`");
                };
                meta.insert(k.trim().to_owned(), v.trim().to_owned());
            }
            let mut limits = serde_json::Map::new();
            for (k, v) in [
                ("rpm", rpm.map(Value::from)),
                ("tpm", tpm.map(Value::from)),
                ("max_body_bytes", max_body_bytes.map(Value::from)),
                ("max_messages", max_messages.map(Value::from)),
                ("max_tokens", max_tokens.map(Value::from)),
            ] {
                if let Some(v) = v {
                    limits.insert(k.into(), v);
                }
            }
            if let Some(usd) = budget_usd {
                limits.insert(
                    "budget".into(),
                    json!({"limit_usd": usd, "window": budget_window}),
                );
            }
            let mut body = json!({"name": name, "roles": roles, "models": models, "limits": limits, "metadata": meta});
            for (k, v) in [("team", team), ("user", user), ("expires_in", expires_in)] {
                if let Some(v) = v {
                    body[k] = json!(v);
                }
            }
            if *capture_payloads {
                body["capture_payloads"] = json!(true);
            }
            client
                .post(base.join("/admin/v1/keys")?)
                .header("content-type", "application/json")
                .body(body.to_string())
        }
        KeysCommand::List => client.get(base.join("/admin/v1/keys")?),
        KeysCommand::Show { id } => {
            client.get(base.join(&format!("/admin/v1/keys/{}", path_segment(id)?))?)
        }
        KeysCommand::Revoke { id } => {
            client.delete(base.join(&format!("/admin/v1/keys/{}", path_segment(id)?))?)
        }
    };
    let body = crate::admin_client::send(req, &args.url).await?;
    if args.json {
        return Ok(format!("{body}\n"));
    }
    let v: Value = serde_json::from_str(&body).context("the answer is not JSON")?;
    Ok(match &args.command {
        KeysCommand::Create { .. } => format!(
            "{}\n\nkey id {} ({}): store the key now, it is not shown again\n",
            v["key"].as_str().unwrap_or_default(),
            v["id"].as_str().unwrap_or_default(),
            v["name"].as_str().unwrap_or_default()
        ),
        KeysCommand::List => {
            let mut out = format!(
                "{:<14} {:<24} {:<16} {:<8} {}\n",
                "ID", "NAME", "TEAM", "STATE", "MODELS"
            );
            for k in v["data"].as_array().into_iter().flatten() {
                out.push_str(&line(k));
            }
            out
        }
        KeysCommand::Show { .. } => format!("{}\n", serde_json::to_string_pretty(&v)?),
        KeysCommand::Revoke { .. } => format!("revoked {}", line(&v)),
    })
}

/// Key ids are letters and digits: anything else is refused here rather
/// than sent as a path.
fn path_segment(id: &str) -> Result<&str> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        bail!("`{id}` is not a key id (letters and digits, as `keys list` shows)");
    }
    Ok(id)
}

fn line(k: &Value) -> String {
    let s = |f: &str| k[f].as_str().unwrap_or("-").to_owned();
    let state = if k["active"].as_bool() == Some(true) {
        "active"
    } else {
        "revoked"
    };
    let models: Vec<&str> = k["models"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    format!(
        "{:<14} {:<24} {:<16} {:<8} {}\n",
        s("id"),
        s("name"),
        s("team"),
        state,
        if models.is_empty() {
            "*".to_owned()
        } else {
            models.join(",")
        }
    )
}
