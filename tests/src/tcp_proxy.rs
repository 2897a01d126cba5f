//! A TCP proxy to put between the daemons and PostgreSQL, which can cut the network.
//!
//! Clients connect to [`TcpProxy::port`]; each connection is relayed to the upstream port.
//! [`TcpProxy::set`] switches the [`Fault`] of every connection at once, open or new.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the network between the clients and the server does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Bytes pass both ways.
    None,
    /// Every open connection is reset at both ends (RST) and the port is closed, so new
    /// connections are refused: what a client sees when a firewall rejects its packets or the
    /// server's address moves to a host without the server. Clients learn at once.
    Refuse,
    /// Nothing moves and nobody is told: open connections stall both ways, and new ones are
    /// accepted but never answered (the proxy's kernel completes the handshake where a real
    /// partition would leave the SYN unanswered; either way the client waits for a server
    /// that says nothing). A cable pulled or a firewall that drops packets. Clients learn only
    /// from their own timeouts. Lifted, it is a partition that healed: what was held is
    /// delivered, as TCP retransmission would, and every connection goes on.
    Blackhole,
}

/// The proxy; dropping it closes every connection. It runs on a thread of its own, so it
/// relays while the test's runtime is blocked (a test waiting for a child process).
pub struct TcpProxy {
    pub port: u16,
    fault: Option<watch::Sender<Fault>>,
    opened: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TcpProxy {
    /// Listens on a free port of 127.0.0.1, relaying to `127.0.0.1:upstream_port`. (Async
    /// for the callers' convenience; the proxy does not run on their runtime.)
    pub async fn start(upstream_port: u16) -> TcpProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let port = listener.local_addr().expect("proxy address").port();
        let upstream: SocketAddr = ([127, 0, 0, 1], upstream_port).into();
        let (fault, rx) = watch::channel(Fault::None);
        let opened = Arc::new(AtomicUsize::new(0));
        let counter = opened.clone();
        let thread = std::thread::spawn(move || {
            let rt =
                tokio::runtime::Builder::new_current_thread().enable_all().build().expect("proxy runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("proxy listener");
                accept_loop(listener, port, upstream, rx, counter).await;
            });
        });
        TcpProxy { port, fault: Some(fault), opened, thread: Some(thread) }
    }

    /// Applies `fault` to every connection, open and new.
    pub fn set(&self, fault: Fault) {
        if let Some(f) = &self.fault {
            f.send_replace(fault);
        }
    }

    /// Connections relayed to the server so far (a reconnect adds one).
    pub fn connections_opened(&self) -> usize {
        self.opened.load(Ordering::SeqCst)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        // The accept loop ends when the sender goes, and with it the runtime and every relay.
        self.fault.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    port: u16,
    upstream: SocketAddr,
    mut fault: watch::Receiver<Fault>,
    opened: Arc<AtomicUsize>,
) {
    let mut listener = Some(listener);
    loop {
        if *fault.borrow_and_update() == Fault::Refuse {
            // A closed port: connection attempts are refused by the kernel.
            drop(listener.take());
            while *fault.borrow_and_update() == Fault::Refuse {
                if fault.changed().await.is_err() {
                    return;
                }
            }
            listener = Some(rebind(port).await);
            continue;
        }
        let Some(l) = listener.as_ref() else { return };
        tokio::select! {
            accepted = l.accept() => {
                if let Ok((client, _)) = accepted {
                    tokio::spawn(relay(client, upstream, fault.clone(), opened.clone()));
                }
            }
            changed = fault.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// Listens on `port` again (its previous listener is gone; the port is nobody else's).
async fn rebind(port: u16) -> TcpListener {
    loop {
        match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => return l,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Waits while the network is blackholed; false once connections are to be reset.
async fn wait_passing(fault: &mut watch::Receiver<Fault>) -> bool {
    loop {
        match *fault.borrow_and_update() {
            Fault::None => return true,
            Fault::Refuse => return false,
            Fault::Blackhole => {}
        }
        if fault.changed().await.is_err() {
            return false;
        }
    }
}

/// Closes a socket with a reset (SO_LINGER 0) instead of an orderly FIN.
fn reset(s: TcpStream) {
    // Deprecated because a linger timeout blocks the closing thread; zero does not.
    #[allow(deprecated)]
    let _ = s.set_linger(Some(Duration::ZERO));
    drop(s);
}

async fn relay(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut fault: watch::Receiver<Fault>,
    opened: Arc<AtomicUsize>,
) {
    // A connection made during a blackhole waits, unanswered, for the network to come back.
    if !wait_passing(&mut fault).await {
        return reset(client);
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else { return reset(client) };
    opened.fetch_add(1, Ordering::SeqCst);
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let reset_both = {
        let (cr, cw) = client.split();
        let (sr, sw) = server.split();
        tokio::select! {
            r = pump(cr, sw, fault.clone()) => r,
            r = pump(sr, cw, fault.clone()) => r,
        }
    };
    if reset_both {
        reset(client);
        reset(server);
    }
}

/// Copies one direction until end of stream (false) or a reset is called for (true).
async fn pump(
    mut from: tokio::net::tcp::ReadHalf<'_>,
    mut to: tokio::net::tcp::WriteHalf<'_>,
    mut fault: watch::Receiver<Fault>,
) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if !wait_passing(&mut fault).await {
            return true;
        }
        let n = tokio::select! {
            n = from.read(&mut buf) => match n {
                Ok(0) | Err(_) => return false,
                Ok(n) => n,
            },
            changed = fault.changed() => if changed.is_err() { return true } else { continue },
        };
        // Bytes read just as a blackhole began are held until it is lifted.
        if !wait_passing(&mut fault).await {
            return true;
        }
        tokio::select! {
            w = to.write_all(&buf[..n]) => if w.is_err() { return false },
            _ = wait_refused(fault.clone()) => return true,
        }
    }
}

async fn wait_refused(mut fault: watch::Receiver<Fault>) {
    loop {
        if *fault.borrow_and_update() == Fault::Refuse {
            return;
        }
        if fault.changed().await.is_err() {
            return;
        }
    }
}
