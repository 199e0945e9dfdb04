//! The monitoring center's DC-09 receiver: a TCP server that answers every frame with ACK, NAK
//! or DUH. Faults let tests take it down (connections refused, open connections cut) or make it
//! lose its ACKs, to show that the panel cloud re-sends until acknowledged and that the center
//! still acts on each event exactly once.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::MonitoringCenter;

/// A frame longer than this is not DC-09 (its length field has 3 hex digits).
const MAX_LINE: usize = 4_200;
/// A connection that sends nothing for this long is closed.
const IDLE: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiverMode {
    #[default]
    None,
    /// Not listening; open connections are cut.
    Down,
    /// Acts on each frame but closes the connection instead of answering: the ACK is lost.
    DropAck,
    /// Answers NAK to everything without acting on it.
    Nak,
}

#[derive(Default)]
struct Tasks {
    accept: Option<JoinHandle<()>>,
    connections: Vec<JoinHandle<()>>,
}

pub struct Dc09Receiver {
    addr: SocketAddr,
    center: Arc<MonitoringCenter>,
    mode: Mutex<ReceiverMode>,
    tasks: Arc<Mutex<Tasks>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Dc09Receiver {
    pub async fn start(
        addr: SocketAddr,
        center: Arc<MonitoringCenter>,
    ) -> std::io::Result<Arc<Self>> {
        let listener = TcpListener::bind(addr).await?;
        let receiver = Arc::new(Dc09Receiver {
            addr: listener.local_addr()?,
            center,
            mode: Mutex::new(ReceiverMode::None),
            tasks: Arc::new(Mutex::new(Tasks::default())),
        });
        receiver.listen(listener);
        Ok(receiver)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn center(&self) -> &Arc<MonitoringCenter> {
        &self.center
    }

    pub fn mode(&self) -> ReceiverMode {
        *lock(&self.mode)
    }

    pub fn is_listening(&self) -> bool {
        lock(&self.tasks).accept.is_some()
    }

    fn listen(self: &Arc<Self>, listener: TcpListener) {
        let me = Arc::downgrade(self);
        let accept = tokio::spawn(async move {
            loop {
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: don't spin.
                        tracing::warn!(error = %e, "DC-09 receiver cannot accept");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Some(receiver) = me.upgrade() else {
                    return;
                };
                let conn = tokio::spawn(receiver.clone().serve(stream));
                let mut tasks = lock(&receiver.tasks);
                tasks.connections.retain(|t| !t.is_finished());
                tasks.connections.push(conn);
            }
        });
        lock(&self.tasks).accept = Some(accept);
    }

    async fn serve(self: Arc<Self>, stream: TcpStream) {
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        let mut line = Vec::with_capacity(256);
        loop {
            line.clear();
            let got = tokio::time::timeout(IDLE, read.read_until(b'\r', &mut line)).await;
            match got {
                Ok(Ok(0)) | Err(_) | Ok(Err(_)) => return,
                Ok(Ok(_)) if line.len() > MAX_LINE => return,
                Ok(Ok(_)) => {}
            }
            let mode = self.mode();
            // The center syncs its journal before it answers: on a blocking thread, so the
            // sync never holds up a runtime worker (and with it whatever request runs then).
            let center = self.center.clone();
            let frame = std::mem::take(&mut line);
            let handled = tokio::task::spawn_blocking(move || {
                let answer = center.handle_frame(&frame, mode == ReceiverMode::Nak).frame;
                (answer, frame)
            })
            .await;
            let Ok((answer, frame)) = handled else { return };
            line = frame;
            if mode == ReceiverMode::DropAck {
                return;
            }
            let Some(answer) = answer else { return };
            if write.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
        }
    }

    /// Changes the fault mode; `down` stops listening and cuts open connections, any other
    /// mode listens again on the same address.
    pub async fn set_mode(self: &Arc<Self>, mode: ReceiverMode) -> std::io::Result<()> {
        *lock(&self.mode) = mode;
        if mode == ReceiverMode::Down {
            self.stop();
            return Ok(());
        }
        if !self.is_listening() {
            let listener = TcpListener::bind(self.addr).await?;
            self.listen(listener);
        }
        Ok(())
    }

    /// Stops listening and cuts every connection.
    pub fn stop(&self) {
        let mut tasks = lock(&self.tasks);
        if let Some(t) = tasks.accept.take() {
            t.abort();
        }
        for t in tasks.connections.drain(..) {
            t.abort();
        }
    }
}

impl Drop for Dc09Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}
