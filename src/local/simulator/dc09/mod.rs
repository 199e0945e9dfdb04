//! SIA DC-09 (IP alarm transmission) between the reference panel cloud and the monitoring
//! center's receiver: the frame format ([`frame`]) and the cloud's transmitter
//! ([`transmitter`]), which queues every Contact ID event and re-sends it until the receiver
//! acknowledges it. The receiver side is [`crate::local::simulator::monitoring::receiver`].

pub mod frame;
pub mod transmitter;
