//! File messages' attachments (issue 17): one row per file of every stored file
//! message, written in the same transaction as the message, whichever way it came
//! (sent here, received, relayed, caught up). The node finds through them which
//! conversation — and so which peers — a file can be fetched from, and which files it
//! chose to download (`file_downloads`), so downloads resume after a restart.
//!
//! The content itself is in `blobs`; these rows only describe it.

use api_types::{FileContent, FileRef};
use chat_core::{ConversationId, Message, MessageId, UnixMs, UserId};
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::StoreResult;
use crate::rows;

/// A file as one message attached it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub message_id: MessageId,
    pub conversation_id: ConversationId,
    pub sender: UserId,
    pub file: FileRef,
    /// When its message was stored here.
    pub received_at: UnixMs,
}

/// Records the files of `message` when it is a file message (nothing otherwise). A
/// text that begins like a file message but does not parse is stored as text only.
pub(crate) fn record(conn: &Connection, message: &Message) -> StoreResult<()> {
    let Ok(content) = FileContent::parse(&message.body) else {
        return Ok(());
    };
    let mut insert = conn.prepare_cached(
        "INSERT INTO attachments (message_id, position, conversation_id, file_id, manifest_hash,
                                  size, chunk_size, name, path, mime, thumbnail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT DO NOTHING",
    )?;
    for (position, file) in content.files.iter().enumerate() {
        let thumbnail = file
            .thumbnail
            .as_ref()
            .and_then(|t| serde_json::to_string(t).ok());
        insert.execute(params![
            message.message_id.to_string(),
            position as i64,
            message.conversation_id.as_str(),
            file.file_id,
            file.manifest,
            i64::try_from(file.size).unwrap_or(i64::MAX),
            i64::from(file.chunk_size),
            file.name,
            file.path,
            file.mime,
            thumbnail,
        ])?;
    }
    Ok(())
}

const COLUMNS: &str = "a.message_id, a.conversation_id, m.sender_id, a.file_id, a.manifest_hash,
     a.size, a.chunk_size, a.name, a.path, a.mime, a.thumbnail, m.received_at";

fn attachment(row: &Row<'_>) -> rusqlite::Result<Attachment> {
    let size: i64 = row.get(5)?;
    let chunk_size: i64 = row.get(6)?;
    let thumbnail: Option<String> = row.get(10)?;
    Ok(Attachment {
        message_id: rows::parse(row, 0)?,
        conversation_id: rows::parse(row, 1)?,
        sender: rows::parse(row, 2)?,
        file: FileRef {
            file_id: row.get(3)?,
            manifest: row.get(4)?,
            size: u64::try_from(size).unwrap_or(0),
            chunk_size: u32::try_from(chunk_size).unwrap_or(0),
            name: row.get(7)?,
            path: row.get(8)?,
            mime: row.get(9)?,
            thumbnail: thumbnail.and_then(|t| serde_json::from_str(&t).ok()),
        },
        received_at: row.get(11)?,
    })
}

/// Every message that attached `file_id` (lowercase hex), in the order they were stored.
pub(crate) fn of_file(conn: &Connection, file_id: &str) -> StoreResult<Vec<Attachment>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM attachments a JOIN messages m ON m.message_id = a.message_id
         WHERE a.file_id = ?1 ORDER BY m.id, a.position"
    );
    let found = conn
        .prepare_cached(&sql)?
        .query_map([file_id], attachment)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(found)
}

/// The files this node chose to download (automatically or by a click) and did not
/// cancel since: one attachment each (its first message).
pub(crate) fn wanted(conn: &Connection) -> StoreResult<Vec<Attachment>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM file_downloads d
         JOIN attachments a ON a.rowid = (SELECT rowid FROM attachments WHERE file_id = d.file_id ORDER BY rowid LIMIT 1)
         JOIN messages m ON m.message_id = a.message_id
         WHERE d.wanted = 1 ORDER BY d.updated_at"
    );
    let found = conn
        .prepare_cached(&sql)?
        .query_map([], attachment)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(found)
}

/// Whether this node chose to download `file_id`: `None` when it never decided.
pub(crate) fn download_wanted(conn: &Connection, file_id: &str) -> StoreResult<Option<bool>> {
    Ok(conn
        .prepare_cached("SELECT wanted FROM file_downloads WHERE file_id = ?1")?
        .query_row([file_id], |r| r.get::<_, i64>(0))
        .optional()?
        .map(|w| w != 0))
}

pub(crate) fn set_download_wanted(
    conn: &Connection,
    file_id: &str,
    wanted: bool,
    now: UnixMs,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO file_downloads (file_id, wanted, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (file_id) DO UPDATE SET wanted = excluded.wanted, updated_at = excluded.updated_at",
    )?
    .execute(params![file_id, i64::from(wanted), now])?;
    Ok(())
}

/// Files this node's user withdrew (stopped sending), oldest first.
pub(crate) fn withdrawn(conn: &Connection) -> StoreResult<Vec<String>> {
    let found = conn
        .prepare_cached("SELECT file_id FROM file_withdrawals ORDER BY withdrawn_at, file_id")?
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(found)
}

pub(crate) fn is_withdrawn(conn: &Connection, file_id: &str) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM file_withdrawals WHERE file_id = ?1")?
        .query_row([file_id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Withdraws `file_id` (`true`) or offers it again (`false`).
pub(crate) fn set_withdrawn(
    conn: &Connection,
    file_id: &str,
    withdrawn: bool,
    now: UnixMs,
) -> StoreResult<()> {
    if withdrawn {
        conn.prepare_cached(
            "INSERT INTO file_withdrawals (file_id, withdrawn_at) VALUES (?1, ?2)
             ON CONFLICT (file_id) DO NOTHING",
        )?
        .execute(params![file_id, now])?;
    } else {
        conn.prepare_cached("DELETE FROM file_withdrawals WHERE file_id = ?1")?
            .execute([file_id])?;
    }
    Ok(())
}
