//! A private `nats-server` per test: its own process, with JetStream in its
//! own store directory, on a port the server picks itself (`-p -1`, read
//! back from its log, so no other process can take it in between), killed
//! when dropped.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const START_DEADLINE: Duration = Duration::from_secs(15);

pub struct NatsServer {
    pub addr: SocketAddr,
    child: Child,
    _store: tempfile::TempDir,
}

impl NatsServer {
    /// Starts `nats-server` (Debian package `nats-server`) and waits until it
    /// accepts connections.
    pub fn start() -> std::io::Result<NatsServer> {
        Self::start_on(None)
    }

    /// Like [`NatsServer::start`], on a given port (to restart a server
    /// where its clients expect it); `None` lets the server pick.
    pub fn start_on(port: Option<u16>) -> std::io::Result<NatsServer> {
        let store = tempfile::tempdir()?;
        let port_arg = port.map_or_else(|| "-1".to_owned(), |p| p.to_string());
        let mut child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port_arg, "-js", "-sd"])
            .arg(store.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot start nats-server ({e}); install it with `apt-get install -y nats-server`"),
                )
            })?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| std::io::Error::other("no stderr pipe"))?;
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        // Keeps reading after the address so the server never blocks on a
        // full log pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some((_, addr)) = line.split_once("Listening for client connections on ") {
                    let _ = addr_tx.send(addr.trim().to_owned());
                }
            }
        });
        let reported = match addr_rx.recv_timeout(START_DEADLINE) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(std::io::Error::other(format!(
                    "nats-server did not report its client port within {START_DEADLINE:?}"
                )));
            }
        };
        let port: u16 = reported
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| {
                std::io::Error::other(format!("unexpected nats-server address `{reported}`"))
            })?;
        let server = NatsServer {
            addr: ([127, 0, 0, 1], port).into(),
            child,
            _store: store,
        };
        server.wait_until_accepting()?;
        Ok(server)
    }

    fn wait_until_accepting(&self) -> std::io::Result<()> {
        let deadline = Instant::now() + START_DEADLINE;
        let mut pause = Duration::from_millis(5);
        while TcpStream::connect(self.addr).is_err() {
            if Instant::now() > deadline {
                return Err(std::io::Error::other(format!(
                    "nats-server on {} did not accept connections within {START_DEADLINE:?}",
                    self.addr
                )));
            }
            // Back-off between polls, not a synchronisation sleep.
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(200));
        }
        Ok(())
    }

    /// Stops the server (SIGKILL), keeping nothing.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
