//! A TCP proxy between clients and a Redis server that can stop forwarding bytes in
//! both directions without closing any socket (a black hole: a NAT or load balancer
//! that dropped its state, a partition), then resume.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running proxy; stops accepting when dropped (open connections stay until their
/// peers close them).
pub struct Proxy {
    pub port: u16,
    paused: Arc<watch::Sender<bool>>,
    /// Connections numbered up to this one forward nothing, ever again.
    severed: Arc<watch::Sender<u64>>,
    opened: Arc<std::sync::atomic::AtomicU64>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free 127.0.0.1 port and forwards every connection to `upstream`.
    pub async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let (tx, _) = watch::channel(false);
        let paused = Arc::new(tx);
        let (cut, _) = watch::channel(0u64);
        let severed = Arc::new(cut);
        let opened = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (p, sev, count) = (paused.clone(), severed.clone(), opened.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let p = p.clone();
                let id = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                let sev = sev.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::spawn(pump(cr, sw, p.subscribe(), id, sev.subscribe()));
                    tokio::spawn(pump(sr, cw, p.subscribe(), id, sev.subscribe()));
                });
            }
        });
        Proxy {
            port,
            paused,
            severed,
            opened,
            accept,
        }
    }

    /// `redis://127.0.0.1:<proxy port>/<db>`.
    pub fn url(&self, db: u8) -> String {
        format!("redis://127.0.0.1:{}/{db}", self.port)
    }

    /// Stops forwarding (sockets stay open; bytes are held, new connections are
    /// accepted but get nothing through).
    pub fn pause(&self) {
        self.paused.send_replace(true);
    }

    /// Forwards again, held bytes first.
    pub fn resume(&self) {
        self.paused.send_replace(false);
    }

    /// Every connection open now goes silent for good, without being closed (a
    /// NAT or load balancer that forgot it); new connections work.
    pub fn sever_existing(&self) {
        self.severed
            .send_replace(self.opened.load(std::sync::atomic::Ordering::SeqCst));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut paused: watch::Receiver<bool>,
    id: u64,
    mut severed: watch::Receiver<u64>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // While paused nothing is read, so nothing is forwarded either way.
        if paused.wait_for(|p| !*p).await.is_err() {
            return;
        }
        if *severed.borrow() >= id {
            // silent for good; the sockets stay open until the proxy's task ends
            std::future::pending::<()>().await;
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => r,
            cut = severed.wait_for(|s| *s >= id) => match cut {
                Ok(_) => continue,
                Err(_) => return,
            },
        };
        let n = match n {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        // Bytes read just before a pause wait for the resume.
        if paused.wait_for(|p| !*p).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
