//! A private `nats-server` per test, on a free port, killed on drop.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NatsServer {
    pub addr: SocketAddr,
    child: Child,
    _store: tempfile::TempDir,
}

impl NatsServer {
    /// Starts `nats-server` (Debian package `nats-server`) with JetStream in
    /// its own store directory and waits until it accepts connections.
    pub fn start() -> std::io::Result<NatsServer> {
        let store = tempfile::tempdir()?;
        // Asking the OS for a free port and handing it over has a small race
        // with other processes; nats-server's own `-p -1` would print the
        // port only in a log line, which is as fragile.
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot start nats-server ({e}); install it with `apt-get install -y nats-server`"),
                )
            })?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut server = NatsServer {
            addr,
            child,
            _store: store,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(status) = server.child.try_wait()? {
                return Err(std::io::Error::other(format!(
                    "nats-server exited early: {status}"
                )));
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::other(
                    "nats-server did not accept connections within 10s",
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
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
