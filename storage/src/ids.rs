//! Identifiers the store hands out and accepts. Each kind has its own type so an
//! envelope id can never be passed where a message id is expected.

use std::fmt;
use std::str::FromStr;

use api_types::NodeId;
use ulid::Ulid;

use crate::error::StoreError;

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
            type Err = StoreError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Ulid::from_string(s.trim())
                    .map($name)
                    .map_err(|e| StoreError::invalid($what, e.to_string()))
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
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let node = s.strip_prefix(LAN_PREFIX).ok_or_else(|| {
            StoreError::invalid("user id", format!("{s:?} does not start with {LAN_PREFIX}"))
        })?;
        let node: NodeId = node
            .parse()
            .map_err(|e: api_types::NodeIdError| StoreError::invalid("user id", e.to_string()))?;
        Ok(UserId::lan(&node))
    }
}

/// A conversation: `dm:lan:{peer_id}` or `group:{global_group_id}`. Both are derived
/// from what every node already knows, so a client can open a chat before any message
/// exists and two nodes name the same group chat alike.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConversationId(String);

const DM_PREFIX: &str = "dm:";
const GROUP_PREFIX: &str = "group:";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConversationTarget {
    Direct(NodeId),
    Group(GlobalGroupId),
}

impl ConversationId {
    pub fn dm(peer: &NodeId) -> Self {
        ConversationId(format!("{DM_PREFIX}{}", UserId::lan(peer)))
    }

    pub fn group(group: &GlobalGroupId) -> Self {
        ConversationId(format!("{GROUP_PREFIX}{group}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn target(&self) -> ConversationTarget {
        // Construction goes through `dm`, `group` or `from_str`, which all validate.
        if let Some(user) = self.0.strip_prefix(DM_PREFIX) {
            if let Some(node) = user.parse::<UserId>().ok().and_then(|u| u.node_id()) {
                return ConversationTarget::Direct(node);
            }
        }
        match self
            .0
            .strip_prefix(GROUP_PREFIX)
            .map(str::parse::<GlobalGroupId>)
        {
            Some(Ok(group)) => ConversationTarget::Group(group),
            _ => unreachable_target(&self.0),
        }
    }
}

#[cold]
fn unreachable_target(id: &str) -> ConversationTarget {
    // Only reachable if a row was edited by hand; a group id of zero never matches.
    tracing::error!(conversation_id = id, "conversation id of unknown shape");
    ConversationTarget::Group(GlobalGroupId::from_ulid(Ulid::nil()))
}

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ConversationId {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(user) = s.strip_prefix(DM_PREFIX) {
            let user: UserId = user.parse()?;
            let node = user
                .node_id()
                .ok_or_else(|| StoreError::invalid("conversation id", s))?;
            return Ok(ConversationId::dm(&node));
        }
        if let Some(group) = s.strip_prefix(GROUP_PREFIX) {
            return Ok(ConversationId::group(&group.parse()?));
        }
        Err(StoreError::invalid(
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
        assert_eq!(dm.target(), ConversationTarget::Direct(node));
        let g = GlobalGroupId::new();
        let conv = ConversationId::group(&g);
        assert_eq!(conv.as_str().parse::<ConversationId>().unwrap(), conv);
        assert_eq!(conv.target(), ConversationTarget::Group(g));
        assert!("dm:lan:nope".parse::<ConversationId>().is_err());
        assert!("chat:1".parse::<ConversationId>().is_err());
    }
}
