//! Turning rows into records. A value that does not parse means the file was edited
//! or damaged; it surfaces as an error naming the column, never as a panic.

use std::str::FromStr;

use rusqlite::types::Type;
use rusqlite::Row;

use chat_core::Hlc;
use chat_core::{Message, MessageStatus};

pub(crate) fn parse<T>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    let text: String = row.get(idx)?;
    text.parse()
        .map_err(|e: T::Err| conversion(idx, format!("{text:?}: {e}")))
}

pub(crate) fn parse_opt<T>(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<T>>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match row.get::<_, Option<String>>(idx)? {
        None => Ok(None),
        Some(_) => parse(row, idx).map(Some),
    }
}

pub(crate) fn conversion(idx: usize, reason: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, reason.into())
}

pub(crate) fn port(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<u16>> {
    match row.get::<_, Option<i64>>(idx)? {
        None => Ok(None),
        Some(p) => u16::try_from(p)
            .map(Some)
            .map_err(|_| conversion(idx, format!("port {p} out of range"))),
    }
}

/// Columns read by `message`, in order, for a `messages` table aliased `m`.
pub(crate) const MESSAGE_COLUMNS: &str =
    "m.message_id, m.conversation_id, m.sender_id, m.body, m.sent_at, m.received_at, m.hlc, m.status,
     m.sender_clock_offset_ms, m.signature";

/// Reads a message from `MESSAGE_COLUMNS` starting at column `at`.
pub(crate) fn message(row: &Row<'_>, at: usize) -> rusqlite::Result<Message> {
    let status: String = row.get(at + 7)?;
    Ok(Message {
        message_id: parse(row, at)?,
        conversation_id: parse(row, at + 1)?,
        sender: parse(row, at + 2)?,
        body: row.get(at + 3)?,
        sent_at: row.get(at + 4)?,
        received_at: row.get(at + 5)?,
        hlc: Hlc::from_sql(row.get(at + 6)?),
        status: MessageStatus::parse(&status)
            .ok_or_else(|| conversion(at + 7, format!("unknown status {status:?}")))?,
        sender_clock_offset_ms: row.get(at + 8)?,
        signature: match row.get::<_, Option<Vec<u8>>>(at + 9)? {
            None => None,
            Some(bytes) => Some(
                chat_core::MessageSignature::from_bytes(&bytes)
                    .ok_or_else(|| conversion(at + 9, "a signature of the wrong length".into()))?,
            ),
        },
    })
}

/// A stamp as SQLite holds it: integers there are signed, and every stamp before the
/// year 10889 fits (`Hlc::fits_sql` refuses the others where they arrive).
pub(crate) trait HlcColumn {
    fn to_sql(self) -> i64;
    fn from_sql(v: i64) -> Self;
}

impl HlcColumn for chat_core::Hlc {
    fn to_sql(self) -> i64 {
        i64::try_from(self.raw()).unwrap_or(i64::MAX)
    }

    fn from_sql(v: i64) -> Self {
        chat_core::Hlc::from_raw(u64::try_from(v).unwrap_or(0))
    }
}
