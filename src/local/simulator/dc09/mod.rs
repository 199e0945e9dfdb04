//! SIA DC-09 (IP alarm transmission) between the reference panel cloud and the monitoring
//! center's receiver: the frame format ([`frame`]) and the cloud's transmitter
//! ([`transmitter`]), which queues every Contact ID event and re-sends it until the receiver
//! acknowledges it. The receiver side is [`crate::local::simulator::monitoring::receiver`].

pub mod frame;
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
