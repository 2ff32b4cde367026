//! A throwaway `redis-server` for tests, benches and examples (feature `testing`): started
//! on a free loopback port without persistence, stopped when dropped.
//!
//! Where `redis-server` is not installed, [`RedisServer::start_or_skip`] prints one line
//! (`skipped: redis-server not found; apt-get install redis-server`) and returns `None`,
//! so a test can pass on a fresh machine; with `PIPELINES_REQUIRE_REDIS=1` in the
//! environment (CI sets it) a missing server is an error instead.

use std::fmt;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The line printed when a test is skipped for want of a server.
pub const SKIP_LINE: &str = "skipped: redis-server not found; apt-get install redis-server";

/// The environment variable that turns a missing server into an error.
pub const REQUIRE_VARIABLE: &str = "PIPELINES_REQUIRE_REDIS";

/// How long a starting server may take to answer `PING`.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// Why a test server could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestServerError {
    /// No `redis-server` on `PATH` (nor at `PIPELINES_REDIS_SERVER`) while
    /// `PIPELINES_REQUIRE_REDIS=1` asks for one. Install it (`apt-get install
    /// redis-server`), or unset the variable to skip such tests.
    #[error("redis-server not found and {REQUIRE_VARIABLE}=1")]
    Required,
    /// The server could not be spawned.
    #[error("could not start redis-server")]
    Spawn(#[source] std::io::Error),
    /// The server started but did not answer `PING` in time, or exited at once (a port
    /// taken between choosing it and binding it; it is tried again a few times first).
    #[error("redis-server on port {port} did not become ready")]
    NotReady {
        /// The port it was started on.
        port: u16,
    },
}

/// A `redis-server` child process on `127.0.0.1`, without persistence (`--save ""
/// --appendonly no`). Killed (and waited for) when dropped.
///
/// ```no_run
/// use pipewright_redis::testing::RedisServer;
///
/// let Some(server) = RedisServer::start_or_skip().unwrap() else { return };
/// println!("redis at {}", server.url());
/// ```
pub struct RedisServer {
    binary: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisServer")
            .field("port", &self.port)
            .field("running", &self.child.is_some())
            .finish()
    }
}

impl RedisServer {
    /// Starts a server, or tells why not: `Ok(None)` (after printing [`SKIP_LINE`] to the
    /// real standard error, past the test harness's capture) when `redis-server` is not
    /// installed and `PIPELINES_REQUIRE_REDIS` is not `1`.
    ///
    /// # Errors
    ///
    /// [`TestServerError::Required`] when the server is missing but required; the
    /// others when it is there but would not start.
    pub fn start_or_skip() -> Result<Option<RedisServer>, TestServerError> {
        match find_binary() {
            Some(binary) => RedisServer::start_with(binary).map(Some),
            None if required() => Err(TestServerError::Required),
            None => {
                // Straight to the process's stderr: the harness captures `eprintln!`.
                let _ = writeln!(std::io::stderr(), "{SKIP_LINE}");
                Ok(None)
            }
        }
    }

    fn start_with(binary: PathBuf) -> Result<RedisServer, TestServerError> {
        let mut server = RedisServer {
            binary,
            port: 0,
            child: None,
        };
        let mut last = None;
        // A free port can be taken by someone else before the server binds it: retry.
        for _ in 0..5 {
            server.port = free_port().map_err(TestServerError::Spawn)?;
            match server.launch() {
                Ok(()) => return Ok(server),
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or(TestServerError::NotReady { port: server.port }))
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port it listens on (the same across [`restart`](RedisServer::restart)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `true` while the server process runs.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server (SIGKILL): clients see the connection drop; nothing is kept, as
    /// if the machine had crashed.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty (after [`kill`](RedisServer::kill),
    /// or killing it first).
    ///
    /// # Errors
    ///
    /// As [`start_or_skip`](RedisServer::start_or_skip), when it would not start.
    pub fn restart(&mut self) -> Result<(), TestServerError> {
        self.kill();
        let mut last = None;
        for _ in 0..50 {
            match self.launch() {
                Ok(()) => return Ok(()),
                // The old socket may linger a moment.
                Err(error) => {
                    last = Some(error);
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        Err(last.unwrap_or(TestServerError::NotReady { port: self.port }))
    }

    fn launch(&mut self) -> Result<(), TestServerError> {
        let port = self.port.to_string();
        let mut child = Command::new(&self.binary)
            .args(["--port", &port, "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(TestServerError::Spawn)?;
        let deadline = Instant::now() + READY_WITHIN;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return Err(TestServerError::NotReady { port: self.port });
            }
            if ping(self.port) {
                self.child = Some(child);
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(TestServerError::NotReady { port: self.port })
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `true` when `PIPELINES_REQUIRE_REDIS=1`.
pub fn required() -> bool {
    std::env::var(REQUIRE_VARIABLE).is_ok_and(|value| value == "1")
}

/// `redis-server` from `PIPELINES_REDIS_SERVER`, else the first on `PATH`, else the
/// usual Debian places.
fn find_binary() -> Option<PathBuf> {
    if let Some(explicit) = std::env::var_os("PIPELINES_REDIS_SERVER") {
        return Some(PathBuf::from(explicit)).filter(|path| path.is_file());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| is_file(candidate))
}

fn is_file(path: &Path) -> bool {
    path.metadata().is_ok_and(|meta| meta.is_file())
}

fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    Ok(listener.local_addr()?.port())
}

/// One `PING` over a fresh connection, in RESP.
fn ping(port: u16) -> bool {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0_u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}
