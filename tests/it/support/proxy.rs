//! A small fault-injecting TCP proxy for HTTP/1.1 services (DynamoDB Local here).
//!
//! It forwards bytes both ways, but reads each request's head first, so it can act on one
//! operation: delay it, or reset the connection instead of forwarding it. DynamoDB names the
//! operation in the `X-Amz-Target` header (`DynamoDB_20120810.TransactWriteItems`), so a rule
//! can fail the writes of a directive while its reads go through: the store failing between
//! verification and recording. Rule `"*"` matches every request: the engine "stopped".
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Close the connection with a TCP reset instead of forwarding the request.
    Reset,
    /// Forward the request after this long.
    Delay(Duration),
}

#[derive(Default)]
struct Rules {
    /// Operation (the part of X-Amz-Target after the dot, or "*") → fault.
    faults: HashMap<String, Fault>,
    /// Requests seen per operation, faulted or not.
    seen: HashMap<String, usize>,
}

pub struct FaultProxy {
    addr: SocketAddr,
    rules: Arc<Mutex<Rules>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// A proxy on a free loopback port in front of `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> FaultProxy {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("upstream host:port");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let rules: Arc<Mutex<Rules>> = Arc::default();
        let r = rules.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(serve(client, upstream, r.clone()));
            }
        });
        FaultProxy { addr, rules, task }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Applies `fault` to every request for `operation` (e.g. "TransactWriteItems"; "*" for all).
    pub fn set(&self, operation: &str, fault: Fault) {
        self.rules
            .lock()
            .unwrap()
            .faults
            .insert(operation.to_string(), fault);
    }

    pub fn clear(&self) {
        self.rules.lock().unwrap().faults.clear();
    }

    /// How many requests for `operation` reached the proxy.
    pub fn seen(&self, operation: &str) -> usize {
        self.rules
            .lock()
            .unwrap()
            .seen
            .get(operation)
            .copied()
            .unwrap_or(0)
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The length of the first complete request in `buf` and its operation, if one is complete.
fn complete_request(buf: &[u8]) -> Option<(usize, String)> {
    let head_len = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_len]);
    let length: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if buf.len() < head_len + length {
        return None;
    }
    let operation = header(&head, "x-amz-target")
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or("")
        .to_string();
    Some((head_len + length, operation))
}

async fn serve(mut client: TcpStream, upstream: SocketAddr, rules: Arc<Mutex<Rules>>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let mut pending = Vec::new();
    let mut from_client = [0u8; 8192];
    let mut from_server = [0u8; 8192];
    loop {
        while let Some((len, operation)) = complete_request(&pending) {
            let fault = {
                let mut r = rules.lock().unwrap();
                *r.seen.entry(operation.clone()).or_default() += 1;
                r.faults
                    .get(&operation)
                    .or_else(|| r.faults.get("*"))
                    .copied()
            };
            match fault {
                Some(Fault::Reset) => {
                    // SO_LINGER 0: closing sends RST, so the client sees "connection reset".
                    let _ = client.set_zero_linger();
                    return;
                }
                Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
                None => {}
            }
            let request: Vec<u8> = pending.drain(..len).collect();
            if server.write_all(&request).await.is_err() {
                return;
            }
        }
        tokio::select! {
            n = client.read(&mut from_client) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&from_client[..n]),
            },
            n = server.read(&mut from_server) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if client.write_all(&from_server[..n]).await.is_err() {
                        return;
                    }
                }
            },
        }
    }
}
