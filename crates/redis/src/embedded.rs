//! A private `redis-server` child process: the embedded default of `tally`, and the Redis
//! every test starts for itself.
//!
//! The child listens on a free loopback port (never assumed to be 6379), keeps its files
//! in a data directory (AOF on unless told otherwise) and is killed when the handle drops.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("could not start redis-server ({0}); install it (e.g. apt-get install redis-server) or set REDIS_URL")]
    Spawn(std::io::Error),
    #[error("redis-server did not become ready within {0:?}: {1}")]
    NotReady(Duration, String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// How to start the child.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    pub data_dir: PathBuf,
    /// `None`: pick a free loopback port.
    pub port: Option<u16>,
    /// AOF `appendonly`: off only for throwaway test data.
    pub aof: bool,
    /// `appendfsync`: `always` (strict), `everysec` (default) or `no`.
    pub fsync: String,
    /// `auto-aof-rewrite-min-size`, in MiB (1024 by default, `TALLY_AOF_REWRITE_MIN_MB`).
    pub aof_rewrite_min_mb: u64,
    /// The binary; `redis-server` on PATH by default.
    pub binary: String,
    /// More `redis-server` arguments (e.g. `--cluster-enabled yes`).
    pub extra_args: Vec<String>,
}

impl EmbeddedOptions {
    pub fn new(data_dir: impl Into<PathBuf>) -> EmbeddedOptions {
        EmbeddedOptions {
            data_dir: data_dir.into(),
            port: None,
            aof: true,
            fsync: "everysec".into(),
            aof_rewrite_min_mb: 1024,
            binary: "redis-server".into(),
            extra_args: Vec::new(),
        }
    }
}

pub struct EmbeddedRedis {
    child: Option<Child>,
    pub port: u16,
    pub options: EmbeddedOptions,
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl EmbeddedRedis {
    pub fn start(mut options: EmbeddedOptions) -> Result<EmbeddedRedis, EmbeddedError> {
        std::fs::create_dir_all(&options.data_dir)?;
        let port = match options.port {
            Some(p) => p,
            None => free_port()?,
        };
        options.port = Some(port);
        let mut me = EmbeddedRedis {
            child: None,
            port,
            options,
        };
        me.spawn()?;
        Ok(me)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn data_dir(&self) -> &Path {
        &self.options.data_dir
    }

    fn spawn(&mut self) -> Result<(), EmbeddedError> {
        let o = &self.options;
        let child = Command::new(&o.binary)
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--protected-mode", "yes"])
            .arg("--dir")
            .arg(&o.data_dir)
            .args(["--appendonly", if o.aof { "yes" } else { "no" }])
            .args(["--appendfsync", &o.fsync])
            .arg("--auto-aof-rewrite-min-size")
            .arg(format!("{}mb", o.aof_rewrite_min_mb))
            // As deploy/redis.conf: the rewrite's child spends a quarter less CPU, and
            // Tally's binary device states barely compress.
            .args(["--rdbcompression", "no"])
            .args(["--save", "", "--daemonize", "no", "--loglevel", "warning"])
            .args(["--logfile", "redis.log"])
            .args(&o.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(EmbeddedError::Spawn)?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(20))
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), EmbeddedError> {
        let start = Instant::now();
        let url = self.url();
        let mut last = String::from("not reachable");
        while start.elapsed() < limit {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(EmbeddedError::NotReady(
                        limit,
                        format!(
                            "exited with {status}; see {}",
                            self.options.data_dir.join("redis.log").display()
                        ),
                    ));
                }
            }
            match ping(&url) {
                Ok(()) => return Ok(()),
                // LOADING: still replaying the AOF.
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(EmbeddedError::NotReady(limit, last))
    }

    /// The process id of the child, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, as a crash would (tests of durability).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port and data directory.
    pub fn restart(&mut self) -> Result<(), EmbeddedError> {
        self.kill();
        self.spawn()
    }

    /// Asks the server to shut down cleanly (flushing the AOF), then waits for it.
    pub fn shutdown(&mut self) {
        if let Ok(mut conn) =
            redis::Client::open(self.url().as_str()).and_then(|c| c.get_connection())
        {
            let _ = redis::cmd("SHUTDOWN").query::<()>(&mut conn);
        }
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `masters` cluster-mode children (no replicas) under `base_dir` and joins them with
/// `redis-cli --cluster create`: a real Redis Cluster on loopback for tests and the
/// benchmark. A master may be down without stopping the others
/// (`cluster-require-full-coverage no`, as in deploy/redis-cluster.conf).
pub fn start_cluster(
    base_dir: &Path,
    masters: usize,
    fsync: &str,
) -> Result<Vec<EmbeddedRedis>, EmbeddedError> {
    let nodes = (0..masters)
        .map(|i| start_cluster_node(base_dir, i, fsync))
        .collect::<Result<Vec<_>, _>>()?;
    create_cluster(nodes)
}

/// A port for a cluster node: free now, and so is its bus port (the port + 10000, which
/// must stay below 65536).
fn cluster_port() -> std::io::Result<u16> {
    for _ in 0..100 {
        let p = free_port()?;
        if p <= 55_535 && TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
            return Ok(p);
        }
    }
    Err(std::io::Error::other(
        "no free port pair for a cluster node",
    ))
}

/// Starts one cluster node, trying again on other ports when another process took its
/// port (or bus port) between choosing and binding.
fn start_cluster_node(
    base_dir: &Path,
    i: usize,
    fsync: &str,
) -> Result<EmbeddedRedis, EmbeddedError> {
    let mut attempt = 0;
    loop {
        let mut o = EmbeddedOptions::new(base_dir.join(format!("node{i}-{attempt}")));
        o.port = Some(cluster_port()?);
        o.fsync = fsync.into();
        o.extra_args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "1000",
            "--cluster-require-full-coverage",
            "no",
        ]
        .map(String::from)
        .to_vec();
        match EmbeddedRedis::start(o) {
            Err(_) if attempt < 4 => attempt += 1,
            other => return other,
        }
    }
}

fn create_cluster(nodes: Vec<EmbeddedRedis>) -> Result<Vec<EmbeddedRedis>, EmbeddedError> {
    let out = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .map_err(EmbeddedError::Spawn)?;
    if !out.status.success() {
        return Err(EmbeddedError::NotReady(
            Duration::ZERO,
            format!(
                "redis-cli --cluster create: {}",
                String::from_utf8_lossy(&out.stdout)
            ),
        ));
    }
    wait_cluster_ok(&nodes.iter().collect::<Vec<_>>(), Duration::from_secs(30))?;
    Ok(nodes)
}

/// Whether a Redis at `url` answers `PING`. A blocking probe for supervising a child
/// process (and finding a running one) before any async runtime exists; requests never
/// go this way.
pub fn ping(url: &str) -> Result<(), String> {
    redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Waits until every node reports `cluster_state:ok`.
pub fn wait_cluster_ok(nodes: &[&EmbeddedRedis], limit: Duration) -> Result<(), EmbeddedError> {
    let start = Instant::now();
    loop {
        let ok = nodes.iter().all(|n| {
            redis::Client::open(n.url())
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut c))
                .is_ok_and(|info| info.contains("cluster_state:ok"))
        });
        if ok {
            return Ok(());
        }
        if start.elapsed() > limit {
            return Err(EmbeddedError::NotReady(
                limit,
                "cluster_state is not ok".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for EmbeddedRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
