//! A throw-away `redis-server` on a free port, for tests and benchmarks (feature
//! `test-server`). It can be killed and restarted on the same port and directory.
//!
//! ```no_run
//! use hippo_queue_redis::test_server::RedisServer;
//! let server = RedisServer::start(); // needs `redis-server` on PATH
//! let url = server.url(1);
//! # let _ = url;
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` child process, killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    dir: PathBuf,
    persistence: Persistence,
}

/// What a [`RedisServer`] keeps on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// Nothing: a restart starts empty.
    None,
    /// An append-only file synced on every write.
    AofAlways,
    /// An append-only file synced once a second (Redis' default with AOF on): a kill
    /// -9 may lose the last second of writes.
    AofEverySec,
}

/// A reply read by [`RedisServer::command`] (RESP2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK` and other status lines.
    Status(String),
    /// An integer.
    Int(i64),
    /// A bulk string (`None`: the null bulk string).
    Bulk(Option<Vec<u8>>),
    /// An array (`None`: the null array).
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text (bulk strings decoded lossily, arrays joined by newlines).
    pub fn text(&self) -> String {
        match self {
            Reply::Status(s) => s.clone(),
            Reply::Int(n) => n.to_string(),
            Reply::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
            Reply::Bulk(None) | Reply::Array(None) => String::new(),
            Reply::Array(Some(items)) => {
                items.iter().map(Reply::text).collect::<Vec<_>>().join("\n")
            }
        }
    }
}

fn read_line(r: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

/// Reads one RESP2 reply; an error reply is `Err(Ok(message))`.
fn read_reply(r: &mut impl BufRead) -> std::io::Result<Result<Reply, String>> {
    let line = read_line(r)?;
    let (kind, rest) = line.split_at(line.len().min(1));
    let num = || rest.parse::<i64>().map_err(|_| bad("bad length"));
    Ok(Ok(match kind {
        "+" => Reply::Status(rest.to_string()),
        "-" => return Ok(Err(rest.to_string())),
        ":" => Reply::Int(num()?),
        "$" => {
            let n = num()?;
            if n < 0 {
                Reply::Bulk(None)
            } else {
                let mut buf = vec![0u8; n as usize + 2];
                r.read_exact(&mut buf)?;
                buf.truncate(n as usize);
                Reply::Bulk(Some(buf))
            }
        }
        "*" => {
            let n = num()?;
            if n < 0 {
                Reply::Array(None)
            } else {
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    match read_reply(r)? {
                        Ok(v) => items.push(v),
                        Err(e) => items.push(Reply::Status(format!("ERR {e}"))),
                    }
                }
                Reply::Array(Some(items))
            }
        }
        _ => return Err(bad("unknown reply type")),
    }))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

impl RedisServer {
    /// A server keeping nothing on disk.
    pub fn start() -> Self {
        Self::launch(Persistence::None)
    }

    /// A server with an append-only file synced on every write, so that a restart
    /// keeps everything.
    pub fn start_persistent() -> Self {
        Self::launch(Persistence::AofAlways)
    }

    /// A server with the given persistence.
    pub fn start_with(persistence: Persistence) -> Self {
        Self::launch(persistence)
    }

    fn launch(persistence: Persistence) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "hippo-queue-redis-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        for _ in 0..5 {
            let mut s = RedisServer {
                child: None,
                port: free_port(),
                dir: dir.clone(),
                persistence,
            };
            if s.spawn() {
                return s;
            }
        }
        panic!("could not start redis-server (is it installed and on PATH?)");
    }

    fn spawn(&mut self) -> bool {
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(&self.dir)
            .arg("--save")
            .arg("")
            .arg("--databases")
            .arg("16");
        match self.persistence {
            Persistence::None => cmd.args(["--appendonly", "no"]),
            Persistence::AofAlways => cmd.args(["--appendonly", "yes", "--appendfsync", "always"]),
            Persistence::AofEverySec => {
                cmd.args(["--appendonly", "yes", "--appendfsync", "everysec"])
            }
        };
        if major_version() >= 7 {
            // DEBUG (SLEEP, ...) from local clients, for fault tests.
            cmd.args(["--enable-debug-command", "local"]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                return true;
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(_)) = c.try_wait()
            {
                self.child = None;
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 16];
        matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
    }

    /// `redis://127.0.0.1:<port>/<db>`.
    pub fn url(&self, db: u8) -> String {
        format!("redis://127.0.0.1:{}/{db}", self.port)
    }

    /// Stops the server abruptly (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server gracefully with `SHUTDOWN` (which writes out the append-only
    /// file) and waits for the process to exit.
    pub fn shutdown(&mut self) {
        let _ = self.command(&["SHUTDOWN"]);
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether the server process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Sends one command on a new connection and reads its reply (waiting up to 60 s,
    /// so `DEBUG SLEEP` works; run such calls off the async runtime). `Err` carries an
    /// error reply or an I/O failure.
    pub fn command(&self, args: &[&str]) -> Result<Reply, String> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.command_bytes(&args)
    }

    /// [`RedisServer::command`] with binary arguments.
    pub fn command_bytes(&self, args: &[&[u8]]) -> Result<Reply, String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| e.to_string())?;
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a);
            req.extend_from_slice(b"\r\n");
        }
        s.write_all(&req).map_err(|e| e.to_string())?;
        let mut r = BufReader::new(s);
        read_reply(&mut r).map_err(|e| e.to_string())?
    }

    /// `CONFIG SET <key> <value>`.
    pub fn config_set(&self, key: &str, value: &str) -> Result<(), String> {
        self.command(&["CONFIG", "SET", key, value]).map(|_| ())
    }

    /// A field of `INFO <section>` (for example `master_repl_offset`).
    pub fn info_field(&self, section: &str, field: &str) -> Option<String> {
        let text = self.command(&["INFO", section]).ok()?.text();
        text.lines().find_map(|l| {
            l.strip_prefix(field)
                .and_then(|r| r.strip_prefix(':'))
                .map(|v| v.trim().to_string())
        })
    }

    /// `REPLICAOF 127.0.0.1 <port>`, or `REPLICAOF NO ONE` with `None`.
    pub fn replicaof(&self, port: Option<u16>) -> Result<(), String> {
        match port {
            Some(p) => self.command(&["REPLICAOF", "127.0.0.1", &p.to_string()]),
            None => self.command(&["REPLICAOF", "NO", "ONE"]),
        }
        .map(|_| ())
    }

    /// Starts it again on the same port and directory.
    pub fn restart(&mut self) {
        self.kill();
        assert!(
            self.spawn(),
            "redis-server did not come back on port {}",
            self.port
        );
    }
}

/// The major version of the installed `redis-server` (0 when unknown).
fn major_version() -> u32 {
    static VERSION: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *VERSION.get_or_init(|| {
        let out = Command::new("redis-server").arg("--version").output();
        let text = out
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        // "Redis server v=7.0.15 sha=..."
        text.split("v=")
            .nth(1)
            .and_then(|v| v.split('.').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    })
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
