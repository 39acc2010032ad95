//! Blocks. The settings' `blocked_peers` and `blocked_subnets` are the one source of
//! truth (docs/STORAGE.md, "Blocks"): the node hands them to the store at every start
//! and change (`apply`), and `peers.blocked` is only their mirror, rewritten from them
//! each time, so the SQL that leaves blocked nodes out (the outbox, group delivery,
//! history, search) needs no list of its own. A peer is blocked when the settings name
//! it, when it was last seen at an address in a blocked subnet, or when it is the new
//! id of a blocked one (an identity change does not lift a block).

use std::collections::HashSet;
use std::net::IpAddr;

use api_types::{Cidr, NodeId};
use rusqlite::{params, Connection};

use crate::error::StoreResult;
use crate::peers;
use crate::rows;
use crate::writer::WriterState;
use chat_core::{MessageId, MessageStatus};

/// How many identity changes a block follows from a blocked id (each change needs a
/// statement signed by the keys before it; a longer chain is no colleague's history).
const MAX_FOLLOWED_CHANGES: usize = 8;

/// SQL condition: the message aliased `m` was written by a node blocked now.
pub(crate) const SENDER_NOT_BLOCKED: &str =
    "NOT EXISTS (SELECT 1 FROM peers bp WHERE bp.blocked = 1 AND m.sender_id = 'lan:' || bp.peer_id)";

/// The settings' blocks, as the store last received them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockList {
    pub peers: Vec<NodeId>,
    pub subnets: Vec<Cidr>,
}

impl BlockList {
    /// Whether a node first met now is blocked: named, or at a blocked address.
    pub(crate) fn covers(&self, peer: &NodeId, ip: Option<&str>) -> bool {
        self.peers.contains(peer) || self.covers_ip(ip)
    }

    fn covers_ip(&self, ip: Option<&str>) -> bool {
        ip.and_then(|ip| ip.parse::<IpAddr>().ok())
            .is_some_and(|ip| self.subnets.iter().any(|c| c.contains(ip)))
    }
}

/// A peer whose block began: its queued envelopes were dropped and these messages
/// failed (for the status events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewlyBlocked {
    pub peer: NodeId,
    pub failed: Vec<MessageId>,
}

/// Makes `list` the blocks and rewrites the mirror. Returns the peers whose block
/// began now; applying the same list again changes nothing and returns none.
pub(crate) fn apply(
    conn: &Connection,
    state: &mut WriterState,
    list: BlockList,
) -> StoreResult<Vec<NewlyBlocked>> {
    // A node blocked before it was ever seen gets its row (and virtual user) now, so it
    // can be listed and unblocked; one that became another id does not come back.
    // Rows made later (a first sighting, a group member) take their block from the
    // list when they are made (`peers::ensure_peer`, `peers::record_sighting`).
    state.blocks = list.clone();
    let mut moved = conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM identity_changes WHERE old_id = ?1 AND local = 0)",
    )?;
    for peer in &list.peers {
        let was_moved: bool = moved.query_row([peer.as_str()], |r| r.get(0))?;
        if state.local.as_ref() != Some(peer) && !was_moved {
            peers::ensure_peer(conn, state, peer)?;
        }
    }
    let followed = followed_ids(conn, &list.peers)?;
    let known: Vec<(NodeId, Option<String>, bool)> = conn
        .prepare_cached("SELECT peer_id, last_ip, blocked FROM peers")?
        .query_map([], |r| Ok((rows::parse(r, 0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut began = Vec::new();
    for (peer, ip, blocked) in known {
        let wanted = followed.contains(&peer) || list.covers_ip(ip.as_deref());
        if wanted == blocked {
            continue;
        }
        conn.prepare_cached(
            "UPDATE peers SET blocked = ?2, online = online AND NOT ?2 WHERE peer_id = ?1",
        )?
        .execute(params![peer.as_str(), wanted])?;
        if wanted {
            let failed = drop_queue(conn, &peer)?;
            tracing::info!(peer = %peer, failed = failed.len(), "peer blocked");
            began.push(NewlyBlocked { peer, failed });
        } else {
            tracing::info!(peer = %peer, "peer unblocked");
        }
    }
    Ok(began)
}

/// Whether messages from `author`, last seen at `ip`, are refused: a blocked node, or
/// one whose known address is in a blocked subnet (what it relays or writes, wherever
/// it arrives from).
pub(crate) fn refuses(
    conn: &Connection,
    state: &WriterState,
    author: &NodeId,
) -> StoreResult<bool> {
    if peers::is_blocked(conn, author)? {
        return Ok(true);
    }
    if state.blocks.subnets.is_empty() {
        return Ok(false);
    }
    let ip: Option<String> = conn
        .prepare_cached("SELECT last_ip FROM peers WHERE peer_id = ?1")?
        .query_row([author.as_str()], |r| r.get(0))
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?;
    Ok(state.blocks.covers_ip(ip.as_deref()))
}

/// The blocked ids and every id a blocked one became (colleagues' identity changes),
/// up to `MAX_FOLLOWED_CHANGES` steps.
fn followed_ids(conn: &Connection, blocked: &[NodeId]) -> StoreResult<HashSet<NodeId>> {
    let mut all: HashSet<NodeId> = blocked.iter().cloned().collect();
    let mut frontier: Vec<NodeId> = blocked.to_vec();
    let mut stmt =
        conn.prepare_cached("SELECT new_id FROM identity_changes WHERE old_id = ?1 AND local = 0")?;
    for _ in 0..MAX_FOLLOWED_CHANGES {
        let mut next = Vec::new();
        for old in &frontier {
            let news = stmt
                .query_map([old.as_str()], |r| rows::parse::<NodeId>(r, 0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            next.extend(news.into_iter().filter(|n| all.insert(n.clone())));
        }
        if next.is_empty() {
            break;
        }
        frontier = next;
    }
    Ok(all)
}

/// Drops a newly blocked peer's queued envelopes and fails the messages they carried,
/// so nothing is sent to it later.
fn drop_queue(conn: &Connection, peer: &NodeId) -> StoreResult<Vec<MessageId>> {
    let failed = conn
        .prepare_cached(
            "UPDATE messages SET status = ?2
             WHERE message_id IN (SELECT message_id FROM outbox WHERE peer_id = ?1 AND message_id IS NOT NULL)
               AND status IN ('pending', 'sent')
             RETURNING message_id",
        )?
        .query_map(params![peer.as_str(), MessageStatus::Failed.as_str()], |r| {
            rows::parse::<MessageId>(r, 0)
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    conn.prepare_cached("DELETE FROM outbox WHERE peer_id = ?1")?
        .execute([peer.as_str()])?;
    Ok(failed)
}
