//! Identifiers of messages, envelopes, groups, users and conversations. Each kind has its own type so an
//! envelope id can never be passed where a message id is expected.

use std::fmt;
use std::str::FromStr;

use api_types::NodeId;
use ulid::Ulid;

/// An identifier that does not parse: which kind, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct IdError {
    pub what: &'static str,
    pub reason: String,
}

impl IdError {
    fn new(what: &'static str, reason: impl Into<String>) -> Self {
        IdError {
            what,
            reason: reason.into(),
        }
    }
}

macro_rules! ulid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Ulid);

        impl $name {
            pub fn new() -> Self {
                $name(Ulid::new())
            }

            pub fn from_ulid(ulid: Ulid) -> Self {
                $name(ulid)
            }

            pub fn ulid(&self) -> Ulid {
                self.0
            }

            /// Milliseconds since the epoch at which the id was generated.
            pub fn timestamp_ms(&self) -> u64 {
                self.0.timestamp_ms()
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Ulid::from_string(s.trim())
                    .map($name)
                    .map_err(|e| IdError::new($what, e.to_string()))
            }
        }
    };
}

ulid_id!(
    /// A message, the same on every node that holds it.
    MessageId,
    "message id"
);
ulid_id!(
    /// One envelope on the wire; the receiver dedupes by it.
    EnvelopeId,
    "envelope id"
);
ulid_id!(
    /// A group as all its members know it.
    GlobalGroupId,
    "global group id"
);

/// A user: `lan:{node_id}`. The local user is `lan:{own node id}` too, so the sender
/// of a message is spelled the same on every node that holds it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

const LAN_PREFIX: &str = "lan:";

impl UserId {
    pub fn lan(node: &NodeId) -> Self {
        UserId(format!("{LAN_PREFIX}{node}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn node_id(&self) -> Option<NodeId> {
        self.0.strip_prefix(LAN_PREFIX)?.parse().ok()
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for UserId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let node = s.strip_prefix(LAN_PREFIX).ok_or_else(|| {
            IdError::new("user id", format!("{s:?} does not start with {LAN_PREFIX}"))
        })?;
        let node: NodeId = node
            .parse()
            .map_err(|e: api_types::NodeIdError| IdError::new("user id", e.to_string()))?;
        Ok(UserId::lan(&node))
    }
}

/// A conversation: `dm:lan:{peer_id}` or `group:{global_group_id}`. Both are derived
/// from what every node already knows, so a client can open a chat before any message
/// exists and two nodes name the same group chat alike. It can only be built from a
/// valid peer or group id, so its target is always known.
#[derive(Debug, Clone)]
pub struct ConversationId {
    text: String,
    target: ConversationTarget,
}

const DM_PREFIX: &str = "dm:";
const GROUP_PREFIX: &str = "group:";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConversationTarget {
    Direct(NodeId),
    Group(GlobalGroupId),
}

impl ConversationId {
    pub fn dm(peer: &NodeId) -> Self {
        ConversationId {
            text: format!("{DM_PREFIX}{}", UserId::lan(peer)),
            target: ConversationTarget::Direct(peer.clone()),
        }
    }

    pub fn group(group: &GlobalGroupId) -> Self {
        ConversationId {
            text: format!("{GROUP_PREFIX}{group}"),
            target: ConversationTarget::Group(*group),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn target(&self) -> &ConversationTarget {
        &self.target
    }
}

// The text determines the target, so identity is the text alone.
impl PartialEq for ConversationId {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for ConversationId {}

impl std::hash::Hash for ConversationId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

impl PartialOrd for ConversationId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ConversationId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.text.cmp(&other.text)
    }
}

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for ConversationId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(user) = s.strip_prefix(DM_PREFIX) {
            let user: UserId = user.parse()?;
            let node = user
                .node_id()
                .ok_or_else(|| IdError::new("conversation id", s))?;
            return Ok(ConversationId::dm(&node));
        }
        if let Some(group) = s.strip_prefix(GROUP_PREFIX) {
            return Ok(ConversationId::group(&group.parse()?));
        }
        Err(IdError::new(
            "conversation id",
            format!("{s:?} is neither dm:lan:{{peer_id}} nor group:{{global_group_id}}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_ids_round_trip() {
        let node: NodeId = "01ARZ3NDEKTSV4RRFFQ69G5FAV".parse().unwrap();
        let dm = ConversationId::dm(&node);
        assert_eq!(dm.as_str(), "dm:lan:01ARZ3NDEKTSV4RRFFQ69G5FAV");
        assert_eq!(dm.as_str().parse::<ConversationId>().unwrap(), dm);
        assert_eq!(dm.target(), &ConversationTarget::Direct(node));
        let g = GlobalGroupId::new();
        let conv = ConversationId::group(&g);
        assert_eq!(conv.as_str().parse::<ConversationId>().unwrap(), conv);
        assert_eq!(conv.target(), &ConversationTarget::Group(g));
        assert!("dm:lan:nope".parse::<ConversationId>().is_err());
        assert!("chat:1".parse::<ConversationId>().is_err());
    }
}
