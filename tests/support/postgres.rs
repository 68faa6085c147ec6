//! A fresh PostgreSQL database per test, on the server at
//! `SWITCHYARD_TEST_POSTGRES` (default: 127.0.0.1:5432, user postgres,
//! trust auth), dropped afterwards. Tests skip, saying why on stderr, when
//! no server is reachable.

// Test support fails the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::time::Duration;

const DB_PREFIX: &str = "switchyard_test_";

pub fn admin_url() -> String {
    std::env::var("SWITCHYARD_TEST_POSTGRES")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres".to_owned())
}

/// `base` pointing at database `db`, for both libpq key=value strings and
/// `postgres://` URLs.
fn with_dbname(base: &str, db: &str) -> String {
    if let Some((scheme, rest)) = base.split_once("://") {
        let (main, query) = match rest.split_once('?') {
            Some((m, q)) => (m, Some(q)),
            None => (rest, None),
        };
        let host = main.split_once('/').map_or(main, |(h, _)| h);
        let mut url = format!("{scheme}://{host}/{db}");
        if let Some(q) = query {
            url.push('?');
            url.push_str(q);
        }
        url
    } else {
        format!("{base} dbname={db}")
    }
}

async fn admin() -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config: tokio_postgres::Config = admin_url().parse()?;
    config.connect_timeout(Duration::from_secs(3));
    let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

/// A fresh database, dropped when this is dropped (even when the test
/// fails). Its name carries its creation time, so a run also drops what a
/// killed run left behind an hour or more ago.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// `None` (after saying so on stderr) when no server is reachable.
    pub async fn create() -> Option<TestDb> {
        let admin = match admin().await {
            Ok(c) => c,
            Err(e) => {
                let mut why = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    why.push_str(&format!(": {s}"));
                    source = s.source();
                }
                eprintln!("SKIPPED: no PostgreSQL at {}: {why}", admin_url());
                return None;
            }
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let stale = admin
            .query(
                "SELECT datname FROM pg_database WHERE datname LIKE 'switchyard\\_test\\_%'",
                &[],
            )
            .await
            .unwrap();
        for row in stale {
            let name: String = row.get(0);
            let created = name
                .strip_prefix(DB_PREFIX)
                .and_then(|r| r.split('_').next())
                .and_then(|s| s.parse::<i64>().ok());
            if created.is_some_and(|c| now - c > 3600) {
                let _ = admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await;
            }
        }
        let name = format!("{DB_PREFIX}{now}_{}", uuid::Uuid::new_v4().simple());
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap();
        let url = with_dbname(&admin_url(), &name);
        Some(TestDb { name, url })
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot block on a
        // future: a thread of its own with its own runtime can.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(admin) = admin().await {
                    let _ = admin
                        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .await;
                }
            });
        });
        let _ = done.join();
    }
}
