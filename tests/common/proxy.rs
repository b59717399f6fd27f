//! A TCP proxy that fails on demand, to put between a store and its server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// How the proxy fails while it is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Nothing listens: new connections are refused.
    Refuse,
    /// Connections are accepted and closed at once, and open ones are cut.
    Cut,
    /// Connections stay open, but nothing passes either way until the proxy is up: a server
    /// that stopped answering.
    Stall,
}

/// A proxy on a loopback port, forwarding to one upstream address.
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    stalled: tokio::sync::watch::Sender<bool>,
}

struct Inner {
    fault: Option<Fault>,
    acceptor: Option<tokio::task::JoinHandle<()>>,
    connections: JoinSet<()>,
}

impl FaultProxy {
    /// Starts forwarding from a fresh loopback port to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Mutex::new(Inner {
            fault: None,
            acceptor: None,
            connections: JoinSet::new(),
        }));
        let proxy = Self {
            addr,
            upstream,
            inner,
            stalled: tokio::sync::watch::Sender::new(false),
        };
        proxy.listen(listener);
        proxy
    }

    /// The address to connect to instead of the upstream one.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts failing with `fault`: open connections are cut, except by a stall.
    pub fn down(&self, fault: Fault) {
        if fault == Fault::Stall {
            self.stalled.send_replace(true);
            return;
        }
        let mut inner = self.inner.lock().unwrap();
        inner.fault = Some(fault);
        inner.connections.abort_all();
        if fault == Fault::Refuse {
            if let Some(acceptor) = inner.acceptor.take() {
                acceptor.abort();
            }
        }
    }

    /// Forwards again.
    pub async fn up(&self) {
        self.stalled.send_replace(false);
        let relisten = {
            let mut inner = self.inner.lock().unwrap();
            inner.fault = None;
            inner
                .acceptor
                .as_ref()
                .is_none_or(tokio::task::JoinHandle::is_finished)
        };
        if relisten {
            // The aborted acceptor drops its listener as it unwinds; retry until the port is
            // free again.
            for _ in 0..100 {
                if let Ok(listener) = TcpListener::bind(self.addr).await {
                    self.listen(listener);
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            panic!("could not listen on {} again", self.addr);
        }
    }

    fn listen(&self, listener: TcpListener) {
        let inner = Arc::clone(&self.inner);
        let upstream = self.upstream;
        let stalled = self.stalled.subscribe();
        let acceptor = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let mut guard = inner.lock().unwrap();
                if guard.fault.is_some() {
                    drop(client);
                    continue;
                }
                guard
                    .connections
                    .spawn(forward(client, upstream, stalled.clone()));
            }
        });
        self.inner.lock().unwrap().acceptor = Some(acceptor);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let mut inner = self.inner.lock().unwrap();
        inner.connections.abort_all();
        if let Some(acceptor) = inner.acceptor.take() {
            acceptor.abort();
        }
    }
}

async fn forward(client: TcpStream, upstream: SocketAddr, stalled: Stalled) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(
        pipe(client_read, server_write, stalled.clone()),
        pipe(server_read, client_write, stalled)
    );
}

type Stalled = tokio::sync::watch::Receiver<bool>;

/// Copies `from` to `to`, holding what it read while the proxy is stalled.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stalled: Stalled,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if stalled.wait_for(|stalled| !stalled).await.is_err() {
            break;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// The `host:port` of a URL such as `redis://127.0.0.1:6379` or
/// `postgres://user@host:5432/db`, resolved.
pub fn socket_addr(url: &str, default_port: u16) -> SocketAddr {
    let authority = url_authority(url);
    let host_port = authority.rsplit('@').next().unwrap();
    let with_port = if host_port
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        host_port.to_owned()
    } else {
        format!("{host_port}:{default_port}")
    };
    std::net::ToSocketAddrs::to_socket_addrs(&with_port)
        .unwrap()
        .next()
        .unwrap()
}

/// `url` with its host and port replaced by `addr`.
pub fn through(url: &str, addr: SocketAddr) -> String {
    let authority = url_authority(url);
    let replaced = match authority.rsplit_once('@') {
        Some((user, _)) => format!("{user}@{addr}"),
        None => addr.to_string(),
    };
    url.replacen(authority, &replaced, 1)
}

fn url_authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split(['/', '?']).next().unwrap()
}
