//! Full-text search over message bodies.
//!
//! The index is FTS5 with the trigram tokenizer: it finds any substring of three or more
//! characters, which serves Chinese (no word breaks) and English word parts alike, case
//! insensitively. A term shorter than three characters (`世界`, `ok`) has no trigram:
//! such terms are matched with `LIKE` over the rows the long terms selected, or, when
//! every term is short, by scanning messages newest first until a page is filled. That
//! scan is linear in how far back the matches are, which is acceptable for the rare
//! one- or two-character search on a desktop-sized history.

use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection};

use crate::blocks::SENDER_NOT_BLOCKED;
use crate::error::StoreResult;
use crate::model::{SearchCursor, SearchPage, SearchQuery};
use crate::rows::{self, MESSAGE_COLUMNS};

/// Most hits one page returns.
pub const MAX_SEARCH_PAGE: u32 = 100;
/// Terms beyond this are ignored: a search box, not a query language.
const MAX_TERMS: usize = 8;
const TRIGRAM: usize = 3;

fn like_pattern(term: &str) -> String {
    let mut pattern = String::with_capacity(term.len() + 2);
    pattern.push('%');
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// An FTS5 string literal: the user's text can never be read as query syntax.
fn fts_phrase(term: &str) -> String {
    format!("\"{}\"", term.replace('"', "\"\""))
}

/// Adds messages stored since the last call to the search index, in the caller's
/// transaction. The writer calls it once per batch, just before committing.
/// Message ids only grow (`INTEGER PRIMARY KEY` takes max + 1 and messages are never
/// deleted by the store), so "after the last indexed id" is exactly the new rows.
pub(crate) fn index_new(conn: &Connection) -> rusqlite::Result<usize> {
    let indexed = conn
        .prepare_cached(
            "INSERT INTO message_search (rowid, body)
             SELECT id, body FROM messages WHERE id > (SELECT last_indexed_id FROM search_progress)",
        )?
        .execute([])?;
    if indexed > 0 {
        conn.prepare_cached(
            "UPDATE search_progress SET last_indexed_id = (SELECT MAX(id) FROM messages)",
        )?
        .execute([])?;
    }
    Ok(indexed)
}

pub(crate) fn search(conn: &Connection, query: &SearchQuery) -> StoreResult<SearchPage> {
    let limit = query.limit.clamp(1, MAX_SEARCH_PAGE);
    let terms: Vec<&str> = query.text.split_whitespace().take(MAX_TERMS).collect();
    if terms.is_empty() {
        return Ok(SearchPage {
            hits: Vec::new(),
            next: None,
        });
    }
    let (long, short): (Vec<&str>, Vec<&str>) =
        terms.iter().partition(|t| t.chars().count() >= TRIGRAM);
    let after = query.after.map_or(i64::MAX, |c| c.0);
    let mut args: Vec<Value> = Vec::new();
    let mut sql = format!("SELECT m.id, {MESSAGE_COLUMNS} FROM ");
    if long.is_empty() {
        sql.push_str("messages m WHERE m.id < ?1");
        args.push(Value::Integer(after));
    } else {
        sql.push_str(
            "message_search s JOIN messages m ON m.id = s.rowid WHERE message_search MATCH ?1 AND s.rowid < ?2",
        );
        let matched: Vec<String> = long.iter().map(|t| fts_phrase(t)).collect();
        args.push(Value::Text(matched.join(" AND ")));
        args.push(Value::Integer(after));
    }
    sql.push_str(&format!(" AND {SENDER_NOT_BLOCKED}"));
    for term in &short {
        args.push(Value::Text(like_pattern(term)));
        sql.push_str(&format!(" AND m.body LIKE ?{} ESCAPE '\\'", args.len()));
    }
    args.push(Value::Integer(i64::from(limit) + 1));
    let order = if long.is_empty() { "m.id" } else { "s.rowid" };
    sql.push_str(&format!(" ORDER BY {order} DESC LIMIT ?{}", args.len()));
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut found = stmt
        .query_map(params_from_iter(args), |row| {
            Ok((row.get::<_, i64>(0)?, rows::message(row, 1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let more = found.len() > limit as usize;
    found.truncate(limit as usize);
    let next = if more {
        found.last().map(|(id, _)| SearchCursor(*id))
    } else {
        None
    };
    Ok(SearchPage {
        hits: found.into_iter().map(|(_, m)| m).collect(),
        next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_text_is_quoted_and_escaped() {
        assert_eq!(fts_phrase(r#"say "hi" OR x"#), r#""say ""hi"" OR x""#);
        assert_eq!(like_pattern("50%_a\\"), r"%50\%\_a\\%");
    }
}
