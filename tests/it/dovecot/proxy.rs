//! A TCP proxy that adds latency and can cut a connection (reconnect tests, latency benches).

use std::time::{Duration, Instant};

use pymap::service::hosts::HostSpec;
use tokio::net::TcpStream;

pub struct Proxy {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub fn host(&self) -> HostSpec {
        HostSpec {
            host: "127.0.0.1".into(),
            port: Some(self.port),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Forwards 127.0.0.1:`port` to `target`, delaying every chunk by `one_way` in each
/// direction (so the round trip grows by twice that, while bandwidth is unchanged). The
/// first connection to carry more than `cut_after` bytes from the client is closed there.
pub async fn proxy(target: u16, one_way: Duration, cut_after: Option<u64>) -> Proxy {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let cut_done = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                continue;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let cut = cut_after.filter(|_| !cut_done.load(Ordering::SeqCst));
            let cut_done = cut_done.clone();
            conns.spawn(async move {
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let up = pump(cr, sw, one_way, cut);
                let down = pump(sr, cw, one_way, None);
                // Either direction ending (or the cut) ends the connection.
                tokio::select! {
                    cut = up => if cut { cut_done.store(true, Ordering::SeqCst) },
                    _ = down => {}
                }
            });
        }
    });
    Proxy { port, task }
}

/// Copies `r` to `w` with a delay; true when it stopped because of the cut.
async fn pump(
    mut r: impl tokio::io::AsyncRead + Unpin,
    mut w: impl tokio::io::AsyncWrite + Unpin,
    delay: Duration,
    cut: Option<u64>,
) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Instant, Vec<u8>)>(1024);
    let reader = async move {
        let mut total = 0u64;
        loop {
            let mut buf = vec![0; 64 * 1024];
            let n = match r.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => n,
            };
            total += n as u64;
            if cut.is_some_and(|c| total > c) {
                return true;
            }
            buf.truncate(n);
            if tx.send((Instant::now() + delay, buf)).await.is_err() {
                return false;
            }
        }
    };
    let writer = async move {
        while let Some((due, buf)) = rx.recv().await {
            tokio::time::sleep_until(due.into()).await;
            if w.write_all(&buf).await.is_err() {
                return;
            }
        }
        let _ = w.shutdown().await;
    };
    tokio::pin!(reader, writer);
    tokio::select! {
        cut = &mut reader => {
            if !cut {
                // End of input: deliver what is still delayed.
                writer.await;
            }
            cut
        }
        () = &mut writer => false,
    }
}
