//! Envelopes: the unit of delivery between nodes (see docs/PROTOCOL.md, "Envelopes").

mod payload;

pub use payload::{dm_outgoing, DmPayload, KIND_DM_SEND};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("invalid envelope: {0}")]
    Invalid(&'static str),
}
