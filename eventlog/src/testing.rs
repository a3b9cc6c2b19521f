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

/// Number of nodes of a [`NatsCluster`].
pub const CLUSTER_SIZE: usize = 3;

/// How long to wait for a cluster to form (meta leader elected, an R3 stream creatable).
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(60);

/// One node of a [`NatsCluster`].
#[derive(Debug)]
struct Node {
    child: Option<Child>,
    name: String,
    port: u16,
    cluster_port: u16,
    dir: PathBuf,
}

/// Three `nats-server` processes forming a JetStream cluster on loopback: free client and
/// cluster ports, one store directory each, routes to each other. Every node is killed
/// (SIGKILL) and the directories removed on drop.
///
/// [`NatsCluster::start`] returns once the cluster can create a stream with 3 replicas (a
/// JetStream meta leader is elected and every node is a peer), polling with a deadline.
///
/// ```no_run
/// # async fn demo() {
/// use eventlog::testing::NatsCluster;
/// use eventlog::{JetStreamLog, JetStreamOptions};
///
/// let mut cluster = NatsCluster::start().expect("nats-server on PATH");
/// let opts = JetStreamOptions { replicas: 3, ..Default::default() };
/// let log = JetStreamLog::connect(&cluster.url(0), opts).await.unwrap();
/// cluster.kill(2); // the streams keep a quorum of 2
/// # drop(log);
/// # }
/// ```
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<Node>,
    /// Base directory: `n1/`, `n2/`, `n3/`, each with `store/` and `nats.log`.
    dir: PathBuf,
    cluster_name: String,
    probes: AtomicU64,
}

impl NatsCluster {
    /// Spawns three servers with JetStream clustering on free ports of 127.0.0.1 and
    /// waits until the cluster is formed.
    pub fn start() -> std::io::Result<Self> {
        let dir = unique_dir("stratus-nats-cluster");
        let tag = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "stratus-nats-cluster".into());
        let mut nodes = Vec::with_capacity(CLUSTER_SIZE);
        for i in 0..CLUSTER_SIZE {
            let node_dir = dir.join(format!("n{}", i + 1));
            std::fs::create_dir_all(node_dir.join("store"))?;
            nodes.push(Node {
                child: None,
                name: format!("{tag}-n{}", i + 1),
                port: 0,
                cluster_port: 0,
                dir: node_dir,
            });
        }
        let mut cluster = Self {
            nodes,
            dir,
            cluster_name: tag,
            probes: AtomicU64::new(0),
        };
        let mut last_err = None;
        for _ in 0..PORT_ATTEMPTS {
            match cluster.spawn_all() {
                Ok(()) => {
                    cluster.wait_formed()?;
                    return Ok(cluster);
                }
                Err(e) => {
                    for n in &mut cluster.nodes {
                        n.stop();
                    }
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| std::io::Error::other("nats cluster did not start")))
    }

    /// Picks fresh ports and spawns every node; each is awaited until it accepts clients.
    fn spawn_all(&mut self) -> std::io::Result<()> {
        // Hold all listeners until every port is chosen, so the six ports differ.
        let listeners = (0..2 * CLUSTER_SIZE)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<std::io::Result<Vec<_>>>()?;
        let ports = listeners
            .iter()
            .map(|l| l.local_addr().map(|a| a.port()))
            .collect::<std::io::Result<Vec<_>>>()?;
        drop(listeners);
        for (i, n) in self.nodes.iter_mut().enumerate() {
            n.port = ports[i];
            n.cluster_port = ports[CLUSTER_SIZE + i];
        }
        for i in 0..CLUSTER_SIZE {
            self.spawn(i)?;
        }
        Ok(())
    }

    /// Spawns node `i` (its current ports) and waits until it accepts client connections.
    fn spawn(&mut self, i: usize) -> std::io::Result<()> {
        let routes = self
            .nodes
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(_, n)| format!("nats-route://127.0.0.1:{}", n.cluster_port))
            .collect::<Vec<_>>()
            .join(",");
        let cluster_name = self.cluster_name.clone();
        let n = &mut self.nodes[i];
        let log_file = n.dir.join("nats.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_file)?;
        let mut child = Command::new(server_binary())
            .arg("-js")
            .args(["-a", "127.0.0.1"])
            .args(["-p", &n.port.to_string()])
            .args(["-n", &n.name])
            .arg("-sd")
            .arg(n.dir.join("store"))
            .args(["--cluster_name", &cluster_name])
            .args(["--cluster", &format!("nats://127.0.0.1:{}", n.cluster_port)])
            .args(["--routes", &routes])
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
                    "nats-server {} exited with {status} (see {})",
                    n.name,
                    log_file.display()
                )));
            }
            if ready(n.port, &n.name) {
                n.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("nats-server {} not ready after {READY_TIMEOUT:?}", n.name),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls until a stream with 3 replicas can be created (and deletes it again): the
    /// meta leader is elected, every node is a current peer and a stream group can elect
    /// its leader. Fails after a deadline, with the last answer.
    pub fn wait_formed(&self) -> std::io::Result<()> {
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        let mut last = String::new();
        loop {
            // Ask any running node (they forward JetStream API requests to the leader).
            for i in self.running() {
                match self.probe_r3(i) {
                    Ok(()) => return Ok(()),
                    Err(e) => last = e.to_string(),
                }
            }
            if Instant::now() >= deadline {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "nats cluster not formed after {CLUSTER_TIMEOUT:?}: {last} (logs in {})",
                        self.dir.display()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Creates and deletes an R3 probe stream through node `i`.
    fn probe_r3(&self, i: usize) -> std::io::Result<()> {
        let n = self.probes.fetch_add(1, Ordering::Relaxed);
        let name = format!("STRATUS_CLUSTER_PROBE_{n}");
        let config = format!(
            r#"{{"name":"{name}","subjects":["stratus-cluster-probe.{n}"],"storage":"memory","num_replicas":3}}"#
        );
        let answer = self.request(
            i,
            &format!("$JS.API.STREAM.CREATE.{name}"),
            config.as_bytes(),
        )?;
        if answer.contains("\"error\"") {
            return Err(std::io::Error::other(answer));
        }
        self.request(i, &format!("$JS.API.STREAM.DELETE.{name}"), b"")?;
        Ok(())
    }

    /// `nats://127.0.0.1:<port>` of node `i` (0-based).
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].port)
    }

    /// The client URLs of all nodes.
    pub fn urls(&self) -> Vec<String> {
        (0..self.nodes.len()).map(|i| self.url(i)).collect()
    }

    /// The server name of node `i` (as in JetStream cluster info, e.g. a stream's leader).
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The node index of a server name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// The base directory (one subdirectory per node, with its store and log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log file of node `i`.
    pub fn log_file(&self, i: usize) -> PathBuf {
        self.nodes[i].dir.join("nats.log")
    }

    /// Indices of the nodes whose process runs.
    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].child.is_some())
            .collect()
    }

    /// Kills node `i` (SIGKILL, like a crash) and waits for it; its store is kept.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].stop();
    }

    /// Stops node `i` cleanly (SIGTERM: the server tells the cluster it is leaving, so the
    /// others count it offline at once) and waits for it, killing it after 10 s; its
    /// store is kept.
    pub fn shut_down(&mut self, i: usize) {
        let Some(mut child) = self.nodes[i].child.take() else {
            return;
        };
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Kills node `i` if it runs, starts it again on the same ports with the same store,
    /// and waits until the cluster is formed again.
    pub fn restart(&mut self, i: usize) -> std::io::Result<()> {
        self.kill(i);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            // The ports can stay busy a moment after the kill.
            match self.spawn(i) {
                Ok(()) => break,
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        self.wait_formed()
    }

    /// The JetStream stream info of `stream` (a JetStream name, e.g. `STRATUS_API`) as
    /// JSON text, asked through node `i`.
    pub fn stream_info(&self, i: usize, stream: &str) -> std::io::Result<String> {
        self.request(i, &format!("$JS.API.STREAM.INFO.{stream}"), b"")
    }

    /// A NATS request through node `i` with the plain text protocol (no client library,
    /// so it works outside any async runtime): returns the reply payload as text.
    pub fn request(&self, i: usize, subject: &str, payload: &[u8]) -> std::io::Result<String> {
        nats_request(self.nodes[i].port, subject, payload, Duration::from_secs(5))
    }
}

impl Node {
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh directory name under the temp dir (not created).
fn unique_dir(prefix: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    ))
}

/// One request/reply over the NATS text protocol on 127.0.0.1:`port`.
fn nats_request(
    port: u16,
    subject: &str,
    payload: &[u8],
    timeout: Duration,
) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(timeout))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?; // INFO
    if !line.starts_with("INFO ") {
        return Err(std::io::Error::other(format!("not a NATS server: {line}")));
    }
    let inbox = "_INBOX.stratus-testing";
    let mut out = Vec::new();
    out.extend_from_slice(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true,\"protocol\":1}\r\n");
    out.extend_from_slice(format!("SUB {inbox} 1\r\n").as_bytes());
    out.extend_from_slice(format!("PUB {subject} {inbox} {}\r\n", payload.len()).as_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
    writer.write_all(&out)?;
    let deadline = Instant::now() + timeout;
    loop {
        if Instant::now() >= deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no reply to {subject}"),
            ));
        }
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::other("connection closed"));
        }
        let l = line.trim_end();
        if l == "PING" {
            writer.write_all(b"PONG\r\n")?;
        } else if let Some(err) = l.strip_prefix("-ERR") {
            return Err(std::io::Error::other(format!("NATS error:{err}")));
        } else if l.starts_with("MSG ") || l.starts_with("HMSG ") {
            // MSG <subject> <sid> <bytes> | HMSG <subject> <sid> <hdr bytes> <total bytes>
            let total: usize = l
                .rsplit(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| std::io::Error::other(format!("bad message line {l}")))?;
            let header_len: usize = if l.starts_with("HMSG ") {
                l.split(' ')
                    .nth(3)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0)
            } else {
                0
            };
            let mut body = vec![0u8; total + 2];
            reader.read_exact(&mut body)?;
            let headers = String::from_utf8_lossy(&body[..header_len]);
            // A status-only message (503 no responders) has headers and no payload.
            if headers.contains(" 503") {
                return Err(std::io::Error::other(format!(
                    "no responders for {subject}"
                )));
            }
            return Ok(String::from_utf8_lossy(&body[header_len..total]).into_owned());
        }
        // +OK, PONG, INFO updates: ignore.
    }
}
