//! Test support: a real `nats-server` with JetStream, spawned on a free port with a
//! temporary store directory.
//!
//! ```no_run
//! # async fn demo() {
//! use eventlog::testing::NatsServer;
//! use eventlog::{JetStreamLog, JetStreamOptions};
//!
//! let server = NatsServer::start().expect("nats-server on PATH");
//! let log = JetStreamLog::connect(&server.url(), JetStreamOptions::default()).await.unwrap();
//! # drop(log);
//! // `server` is killed and its store removed when dropped.
//! # }
//! ```
//!
//! `nats-server` must be on `PATH`, in `/usr/sbin`, or named by `NATS_SERVER_BIN` (Debian: `apt-get install nats-server`; `ops/test.sh`
//! installs it). The server listens on 127.0.0.1 only.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long to wait for a spawned server to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Attempts at finding a free port when the chosen one turns out taken.
const PORT_ATTEMPTS: usize = 5;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A `nats-server -js` child process. Killed (SIGKILL) and its directory removed on drop.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    /// Base directory: `store/` (JetStream) and `nats.log` (server output).
    dir: PathBuf,
}

impl NatsServer {
    /// Spawns a server with JetStream on a free port of 127.0.0.1 and a fresh store
    /// directory, and waits until it accepts connections.
    pub fn start() -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "stratus-nats-{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(dir.join("store"))?;
        let mut server = Self {
            child: None,
            port: 0,
            dir,
        };
        let mut last_err = None;
        for _ in 0..PORT_ATTEMPTS {
            server.port = free_port()?;
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| std::io::Error::other("nats-server did not start")))
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store directory (`-sd`).
    pub fn store_dir(&self) -> PathBuf {
        self.dir.join("store")
    }

    /// The server's log file.
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("nats.log")
    }

    /// True while the child process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Kills the server (SIGKILL, like a crash) and waits for it; the store is kept.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server if it runs, then starts it again on the same port with the same
    /// store, and waits until it accepts connections.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.stop();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            // The port can stay busy a moment after the kill.
            match self.spawn() {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Spawns the child on `self.port` and waits until it is ready.
    fn spawn(&mut self) -> std::io::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_file())?;
        let mut child = Command::new(server_binary())
            .arg("-js")
            .args(["-a", "127.0.0.1"])
            .args(["-p", &self.port.to_string()])
            .args(["-n", &self.name()])
            .arg("-sd")
            .arg(self.store_dir())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("spawn nats-server (is it on PATH? apt-get install nats-server): {e}"),
                )
            })?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                return Err(std::io::Error::other(format!(
                    "nats-server exited with {status} (see {})",
                    self.log_file().display()
                )));
            }
            if ready(self.port, &self.name()) {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("nats-server not ready after {READY_TIMEOUT:?}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server name (`-n`): unique, derived from the directory.
    fn name(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "stratus-nats".into())
    }

    /// The base directory of this server (store and log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `$NATS_SERVER_BIN`, else `nats-server` from `PATH`, else Debian's `/usr/sbin/nats-server`
/// (not on a non-root user's `PATH`).
fn server_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("NATS_SERVER_BIN") {
        return PathBuf::from(bin);
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("nats-server").is_file()))
        .unwrap_or(false);
    let debian = Path::new("/usr/sbin/nats-server");
    if !on_path && debian.is_file() {
        return debian.to_path_buf();
    }
    PathBuf::from("nats-server")
}

/// A port that was free a moment ago.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// True when the NATS server named `name` answers on `port` (it sends `INFO {...}` first,
/// with its name: another test's server that took the port does not count).
fn ready(port: u16, name: &str) -> bool {
    let Ok(stream) = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    ) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok()
        && line.starts_with("INFO ")
        && line.contains(&format!("\"server_name\":\"{name}\""))
}
