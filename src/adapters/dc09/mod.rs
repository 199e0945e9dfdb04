//! Sending SIA DC-09 to a monitoring center's receiver (the frames are
//! [`crate::wire::dc09`]): the durable [`transmitter`], which queues every Contact ID event and
//! re-sends it until the receiver acknowledges it (the reference panel cloud's link to its
//! center), and the one-shot [`sender`], the skill's own second path (the `AlarmReceiver`
//! port). Both exchange frames through [`link`]. The receiver side is local-only:
//! `crate::local::simulator::monitoring::receiver`.

mod link;
pub mod sender;
pub mod transmitter;

/// Tests: an address nobody listens on (a port the OS handed out, closed again at once), for a
/// receiver that never answers.
#[cfg(test)]
pub(crate) fn unused_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}
