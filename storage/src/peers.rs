//! Peers the mesh has seen, and the virtual user `lan:{peer_id}` each one is.

use api_types::NodeId;
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::chat::validate_display_name;
use crate::error::{StoreError, StoreResult};
use crate::model::{KeyPin, Peer, PeerSighting};
use crate::rows;
use crate::writer::WriterState;
use chat_core::UnixMs;
use chat_core::UserId;

/// Capabilities are lan-mesh's JSON; bounded so a peer cannot bloat every row.
const MAX_CAPABILITIES_BYTES: usize = 4096;

const PEER_COLUMNS: &str =
    "peer_id, display_name, last_ip, last_port, online, last_seen_at, capabilities, blocked";

fn peer_row(row: &Row<'_>) -> rusqlite::Result<Peer> {
    Ok(Peer {
        peer_id: rows::parse(row, 0)?,
        display_name: row.get(1)?,
        last_ip: row.get(2)?,
        last_port: rows::port(row, 3)?,
        online: row.get(4)?,
        last_seen_at: row.get(5)?,
        capabilities: row.get(6)?,
        blocked: row.get(7)?,
    })
}

fn refuse_self(state: &WriterState, peer: &NodeId) -> StoreResult<()> {
    if state.local.as_ref() == Some(peer) {
        return Err(StoreError::invalid("peer_id", "that is this node's own id"));
    }
    Ok(())
}

/// Makes sure a peer and its virtual user exist, e.g. a group member never discovered
/// directly. Its name stays empty until discovery fills it in.
pub(crate) fn ensure_peer(
    conn: &Connection,
    state: &WriterState,
    peer: &NodeId,
) -> StoreResult<()> {
    refuse_self(state, peer)?;
    conn.prepare_cached(
        "INSERT INTO peers (peer_id, display_name, blocked) VALUES (?1, '', ?2)
         ON CONFLICT DO NOTHING",
    )?
    .execute(params![peer.as_str(), state.blocks.covers(peer, None)])?;
    conn.prepare_cached(
        "INSERT INTO users (user_id, kind, peer_id, display_name) VALUES (?1, 'lan', ?2, '')
         ON CONFLICT DO NOTHING",
    )?
    .execute(params![UserId::lan(peer).as_str(), peer.as_str()])?;
    Ok(())
}

pub(crate) fn record_sighting(
    conn: &Connection,
    state: &WriterState,
    s: &PeerSighting,
) -> StoreResult<Peer> {
    refuse_self(state, &s.peer_id)?;
    let name = validate_display_name(&s.display_name)?;
    if s.ip.parse::<std::net::IpAddr>().is_err() {
        return Err(StoreError::invalid(
            "ip",
            format!("{:?} is not an IP address", s.ip),
        ));
    }
    if s.capabilities.len() > MAX_CAPABILITIES_BYTES {
        return Err(StoreError::invalid("capabilities", "too long"));
    }
    conn.prepare_cached(
        "INSERT INTO peers (peer_id, display_name, last_ip, last_port, online, last_seen_at,
                            capabilities, blocked)
         VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6, ?7)
         ON CONFLICT (peer_id) DO UPDATE SET display_name = excluded.display_name,
             last_ip = excluded.last_ip, last_port = excluded.last_port, online = 1,
             last_seen_at = excluded.last_seen_at, capabilities = excluded.capabilities,
             blocked = peers.blocked OR excluded.blocked",
    )?
    .execute(params![
        s.peer_id.as_str(),
        name,
        s.ip,
        s.port,
        s.seen_at,
        s.capabilities,
        state.blocks.covers(&s.peer_id, Some(&s.ip))
    ])?;
    conn.prepare_cached(
        "INSERT INTO users (user_id, kind, peer_id, display_name) VALUES (?1, 'lan', ?2, ?3)
         ON CONFLICT (user_id) DO UPDATE SET display_name = excluded.display_name",
    )?
    .execute(params![
        UserId::lan(&s.peer_id).as_str(),
        s.peer_id.as_str(),
        name
    ])?;
    peer(conn, &s.peer_id)?.ok_or_else(|| StoreError::not_found("peer", &s.peer_id))
}

pub(crate) fn set_offline(conn: &Connection, peer: &NodeId, now: UnixMs) -> StoreResult<()> {
    let n = conn
        .prepare_cached("UPDATE peers SET online = 0, last_seen_at = MAX(COALESCE(last_seen_at, 0), ?2) WHERE peer_id = ?1")?
        .execute(params![peer.as_str(), now])?;
    if n == 0 {
        return Err(StoreError::not_found("peer", peer));
    }
    Ok(())
}

/// At start-up nobody is online until seen again.
pub(crate) fn set_all_offline(conn: &Connection) -> StoreResult<usize> {
    Ok(conn.execute("UPDATE peers SET online = 0 WHERE online = 1", [])?)
}

pub(crate) fn peer(conn: &Connection, peer: &NodeId) -> StoreResult<Option<Peer>> {
    conn.prepare_cached(&format!(
        "SELECT {PEER_COLUMNS} FROM peers WHERE peer_id = ?1"
    ))?
    .query_row([peer.as_str()], peer_row)
    .optional()
    .map_err(Into::into)
}

pub(crate) fn peers(conn: &Connection) -> StoreResult<Vec<Peer>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {PEER_COLUMNS} FROM peers ORDER BY online DESC, display_name COLLATE NOCASE, peer_id"
    ))?;
    let list = stmt
        .query_map([], peer_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(list)
}

/// A peer that exists and is not blocked, or the error saying which it is not.
pub(crate) fn require_sendable(conn: &Connection, peer: &NodeId) -> StoreResult<()> {
    let blocked: Option<bool> = conn
        .prepare_cached("SELECT blocked FROM peers WHERE peer_id = ?1")?
        .query_row([peer.as_str()], |r| r.get(0))
        .optional()?;
    match blocked {
        None => Err(StoreError::not_found("peer", peer)),
        Some(true) => Err(StoreError::Blocked(peer.to_string())),
        Some(false) => Ok(()),
    }
}

pub(crate) fn is_blocked(conn: &Connection, peer: &NodeId) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached("SELECT COALESCE((SELECT blocked FROM peers WHERE peer_id = ?1), 0)")?
        .query_row([peer.as_str()], |r| r.get(0))?)
}

/// Pins a peer's link keys on first contact; afterwards only the same keys match. The
/// pin stays with the peer row until [`unpin_link_keys`]: forgetting a peer
/// (`DELETE /api/v1/peers/{id}`) is how an admin accepts a reinstalled machine's new keys.
pub(crate) fn pin_link_keys(
    conn: &Connection,
    state: &WriterState,
    peer: &NodeId,
    keys: &[u8; 64],
) -> StoreResult<KeyPin> {
    ensure_peer(conn, state, peer)?;
    let pinned: Option<Vec<u8>> = conn
        .prepare_cached("SELECT link_keys FROM peers WHERE peer_id = ?1")?
        .query_row([peer.as_str()], |r| r.get(0))?;
    match pinned {
        Some(pinned) if pinned.as_slice() == keys.as_slice() => Ok(KeyPin::Matches),
        Some(_) => Ok(KeyPin::Mismatch),
        None => {
            conn.prepare_cached("UPDATE peers SET link_keys = ?2 WHERE peer_id = ?1")?
                .execute(params![peer.as_str(), keys.as_slice()])?;
            Ok(KeyPin::Pinned)
        }
    }
}

pub(crate) fn unpin_link_keys(conn: &Connection, peer: &NodeId) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached(
            "UPDATE peers SET link_keys = NULL WHERE peer_id = ?1 AND link_keys IS NOT NULL",
        )?
        .execute([peer.as_str()])?
        > 0)
}
