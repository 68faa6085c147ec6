//! A private `nats-server` per test: its own process on a port the server
//! picks itself (`-p -1`, read back from its log), killed when dropped.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const START_DEADLINE: Duration = Duration::from_secs(15);

pub struct NatsServer {
    child: Child,
    port: u16,
}

impl NatsServer {
    pub fn start() -> Self {
        let spawned = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", "-1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "`nats-server` is not on PATH; the NATS contract tests need it: \
                 install it with `apt-get install -y nats-server`"
            ),
            Err(e) => panic!("cannot start nats-server: {e}"),
        };
        let stderr = child.stderr.take().expect("piped stderr");
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
        let addr = match addr_rx.recv_timeout(START_DEADLINE) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("nats-server did not report its client port within {START_DEADLINE:?}");
            }
        };
        let port: u16 = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected nats-server address `{addr}`"));
        let server = NatsServer { child, port };
        server.wait_until_accepting();
        server
    }

    fn wait_until_accepting(&self) {
        let deadline = Instant::now() + START_DEADLINE;
        let mut pause = Duration::from_millis(5);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nats-server on port {} did not accept connections within {START_DEADLINE:?}",
                self.port
            );
            // Back-off between polls, not a synchronisation sleep.
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
