//! The transport plane: encrypted, authenticated WebSocket links between nodes
//! (docs/PROTOCOL.md, "Transport").
//!
//! Pure core — [`noise`] (handshake state machine, session cipher), [`replay_window`],
//! [`frame`] (link frames), [`identity`] (node keys) — and the I/O shell: [`link`] (one
//! connection) and [`manager`] (the listener, dialling, one link per peer), behind the
//! [`Transport`] handle. Delivery (outbox, inbox, acks) lives in `crate::delivery`.

pub mod config;
pub mod frame;
pub mod health;
pub mod identity;
pub mod link;
pub mod manager;
pub mod noise;
pub mod replay_window;
mod slots;
pub mod stats;
pub mod twins;

pub use config::TransportConfig;
pub use frame::{Ack, Frame, Reject};
pub use health::{Failure, LinkPhase, LinkReport};
pub use identity::{
    ChangeKind, IdentityChange, IdentityStatement, KeyError, NodeKeys, PeerKeys, NODE_KEYS_LEN,
};
pub use link::LinkEnd;
pub use manager::{LinkEvent, SendError, Transport, TransportError, DUPLICATE_IDENTITY};
pub use twins::Twin;
