//! A TCP proxy on loopback that a test can cut: between a bunker and its
//! database (a replica cut off from PostgreSQL) or its relay (answers that
//! never leave), without touching the processes themselves.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ProxyMode {
    /// Forward both ways.
    Pass = 0,
    /// Close every connection and refuse new ones at once (a host that is
    /// gone: connections fail fast).
    Cut = 1,
    /// Forward what the server sends; swallow what the client sends (the
    /// client's writes "succeed" but never arrive).
    SwallowUpstream = 2,
}

/// A running proxy to one target.
pub struct TcpProxy {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
    changed: watch::Sender<u8>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Listen on a free loopback port and forward to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let mode = Arc::new(AtomicU8::new(ProxyMode::Pass as u8));
        let (changed, watcher) = watch::channel(0u8);
        let task = tokio::spawn(accept(listener, target, Arc::clone(&mode), watcher));
        TcpProxy {
            addr,
            mode,
            changed,
            task,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Change what it does (a cut closes every open connection).
    pub fn set_mode(&self, mode: ProxyMode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn mode_of(mode: &AtomicU8) -> ProxyMode {
    match mode.load(Ordering::SeqCst) {
        1 => ProxyMode::Cut,
        2 => ProxyMode::SwallowUpstream,
        _ => ProxyMode::Pass,
    }
}

async fn accept(
    listener: TcpListener,
    target: SocketAddr,
    mode: Arc<AtomicU8>,
    watcher: watch::Receiver<u8>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if mode_of(&mode) == ProxyMode::Cut {
            drop(client);
            continue;
        }
        let _ = client.set_nodelay(true);
        tokio::spawn(forward(client, target, Arc::clone(&mode), watcher.clone()));
    }
}

async fn forward(
    client: TcpStream,
    target: SocketAddr,
    mode: Arc<AtomicU8>,
    mut watcher: watch::Receiver<u8>,
) {
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up_mode = Arc::clone(&mode);
    let upstream = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if mode_of(&up_mode) == ProxyMode::SwallowUpstream {
                continue;
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let downstream = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if client_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let cut = async move {
        loop {
            if watcher.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
            if mode_of(&mode) == ProxyMode::Cut {
                return;
            }
        }
    };
    // Whichever ends first ends the connection (both halves drop).
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
        () = cut => {}
    }
}
