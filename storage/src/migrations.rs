//! The schema, as append-only migrations. `PRAGMA user_version` holds how many have run.
//!
//! Never edit or reorder a migration that has shipped: add a new one. Each runs in the
//! same transaction as the `user_version` bump, so a crash mid-migration leaves the
//! previous version intact. `tests/fixtures/schema_v*.sql` holds a database at every
//! earlier version; the migration tests upgrade each of them.

use rusqlite::Connection;

use crate::error::StoreError;

/// Marks the file as ours (`PRAGMA application_id`, "LNCH"), so a foreign SQLite file is
/// refused instead of being migrated into.
pub(crate) const APPLICATION_ID: i32 = 0x4C4E_4348;

pub(crate) const MIGRATIONS: &[&str] = &[
    // v1: chat store and mesh tables.
    r#"
CREATE TABLE local_identity (
    singleton    INTEGER PRIMARY KEY CHECK (singleton = 1),
    node_id      TEXT NOT NULL,
    display_name TEXT NOT NULL,
    created_at   INTEGER NOT NULL
) STRICT;

CREATE TABLE peers (
    peer_id      TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    last_ip      TEXT,
    last_port    INTEGER,
    online       INTEGER NOT NULL DEFAULT 0 CHECK (online IN (0, 1)),
    last_seen_at INTEGER,
    capabilities TEXT NOT NULL DEFAULT '[]',
    blocked      INTEGER NOT NULL DEFAULT 0 CHECK (blocked IN (0, 1))
) STRICT;

-- The local user and one virtual user per peer; address and presence come from peers.
CREATE TABLE users (
    user_id      TEXT PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('local', 'lan')),
    peer_id      TEXT REFERENCES peers (peer_id),
    display_name TEXT NOT NULL,
    CHECK ((kind = 'lan') = (peer_id IS NOT NULL))
) STRICT;

CREATE TABLE groups (
    group_id        TEXT PRIMARY KEY,
    global_group_id TEXT NOT NULL UNIQUE,
    name            TEXT NOT NULL,
    announcement    TEXT NOT NULL DEFAULT '',
    owner_id        TEXT NOT NULL,
    revision        INTEGER NOT NULL,
    revision_editor TEXT NOT NULL,
    updated_at      INTEGER NOT NULL,
    created_at      INTEGER NOT NULL
) STRICT;

CREATE TABLE group_members (
    group_id  TEXT NOT NULL REFERENCES groups (group_id) ON DELETE CASCADE,
    member_id TEXT NOT NULL,
    PRIMARY KEY (group_id, member_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE conversations (
    conversation_id TEXT PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('dm', 'group')),
    peer_id         TEXT REFERENCES peers (peer_id),
    group_id        TEXT REFERENCES groups (group_id),
    last_message_id TEXT,
    last_hlc        INTEGER,
    unread          INTEGER NOT NULL DEFAULT 0 CHECK (unread >= 0),
    created_at      INTEGER NOT NULL,
    CHECK ((kind = 'dm') = (peer_id IS NOT NULL)),
    CHECK ((kind = 'group') = (group_id IS NOT NULL))
) STRICT;

-- `id` is an explicit INTEGER PRIMARY KEY so the full-text index can point at it:
-- VACUUM may renumber an implicit rowid.
CREATE TABLE messages (
    id              INTEGER PRIMARY KEY,
    message_id      TEXT NOT NULL UNIQUE,
    conversation_id TEXT NOT NULL REFERENCES conversations (conversation_id),
    sender_id       TEXT NOT NULL,
    body            TEXT NOT NULL,
    sent_at         INTEGER NOT NULL,
    received_at     INTEGER NOT NULL,
    hlc             INTEGER NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'delivered', 'failed'))
) STRICT;
CREATE INDEX messages_in_order ON messages (conversation_id, hlc, message_id);

CREATE TABLE group_links (
    global_group_id TEXT PRIMARY KEY,
    group_id        TEXT NOT NULL UNIQUE REFERENCES groups (group_id),
    conversation_id TEXT NOT NULL UNIQUE REFERENCES conversations (conversation_id),
    revision        INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) STRICT;

CREATE TABLE outbox (
    envelope_id   TEXT PRIMARY KEY,
    peer_id       TEXT NOT NULL REFERENCES peers (peer_id),
    kind          TEXT NOT NULL,
    payload       BLOB NOT NULL,
    message_id    TEXT,
    status        TEXT NOT NULL CHECK (status IN ('pending', 'failed')),
    retry_count   INTEGER NOT NULL DEFAULT 0,
    next_retry_at INTEGER NOT NULL,
    last_error    TEXT,
    created_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX outbox_due ON outbox (status, next_retry_at, envelope_id);
CREATE INDEX outbox_by_peer ON outbox (peer_id);

-- Group fan-out: one message row, and per member the last local message it acked.
CREATE TABLE group_delivery (
    conversation_id  TEXT NOT NULL REFERENCES conversations (conversation_id),
    peer_id          TEXT NOT NULL,
    acked_hlc        INTEGER NOT NULL,
    acked_message_id TEXT NOT NULL,
    retry_count      INTEGER NOT NULL DEFAULT 0,
    next_retry_at    INTEGER NOT NULL,
    last_error       TEXT,
    PRIMARY KEY (conversation_id, peer_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE inbox_dedupe (
    envelope_id  TEXT PRIMARY KEY,
    from_peer_id TEXT NOT NULL,
    received_at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX inbox_dedupe_by_age ON inbox_dedupe (received_at);
"#,
    // v2: full-text search over message bodies. The trigram tokenizer indexes every
    // 3-character window, so it finds Chinese (no spaces between words) and word parts
    // in English alike. External content: the text lives once, in `messages`.
    //
    // New messages are indexed by the writer once per batch (`search::index_new`), not
    // by an insert trigger: FTS5 flushes its in-memory terms at every savepoint, and a
    // trigger runs inside one per statement, which made every insert write a tiny index
    // segment (measured 4-5x slower). `search_progress` says how far indexing got, in
    // the same transaction as the messages.
    r#"
CREATE VIRTUAL TABLE message_search USING fts5 (
    body, content = 'messages', content_rowid = 'id', tokenize = 'trigram'
);
CREATE TABLE search_progress (
    singleton       INTEGER PRIMARY KEY CHECK (singleton = 1),
    last_indexed_id INTEGER NOT NULL
) STRICT;
INSERT INTO message_search (message_search) VALUES ('rebuild');
INSERT INTO search_progress (singleton, last_indexed_id) VALUES (1, COALESCE((SELECT MAX(id) FROM messages), 0));
CREATE TRIGGER message_search_delete AFTER DELETE ON messages
WHEN old.id <= (SELECT last_indexed_id FROM search_progress) BEGIN
    INSERT INTO message_search (message_search, rowid, body) VALUES ('delete', old.id, old.body);
END;
CREATE TRIGGER message_search_update AFTER UPDATE OF body ON messages
WHEN old.id <= (SELECT last_indexed_id FROM search_progress) BEGIN
    INSERT INTO message_search (message_search, rowid, body) VALUES ('delete', old.id, old.body);
    INSERT INTO message_search (rowid, body) VALUES (new.id, new.body);
END;
"#,
    // v3: the keys a peer proved on its first encrypted link (Noise static key and
    // envelope signing key, 32 bytes each), pinned: a later link showing other keys
    // for the same node id is refused.
    r#"
ALTER TABLE peers ADD COLUMN link_keys BLOB CHECK (link_keys IS NULL OR length(link_keys) = 64);
"#,
    // v4: groups as convergent state. `state` holds the whole replicated state (JSON,
    // `storage::GroupState`); the other columns and `group_members` stay its
    // projection for queries. Groups from before have `state = ''` and are read from
    // their columns once. A group a member added this node to while auto-accept is
    // off waits in `group_invitations` (declined ones stay, so their changes are
    // ignored).
    r#"
ALTER TABLE groups ADD COLUMN state TEXT NOT NULL DEFAULT '';
ALTER TABLE groups ADD COLUMN dissolved INTEGER NOT NULL DEFAULT 0 CHECK (dissolved IN (0, 1));
CREATE TABLE group_invitations (
    global_group_id TEXT PRIMARY KEY,
    from_peer_id    TEXT NOT NULL,
    state           TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'declined')),
    received_at     INTEGER NOT NULL
) STRICT;
"#,
    // v5: the author's clock offset when a message arrived (its clock minus ours, as
    // discovery measured it; NULL for own messages and when unknown), so the time shown
    // for a message from a PC with a wrong clock is on this node's clock, while
    // `sent_at` keeps the author's own stamp for relays.
    r#"
ALTER TABLE messages ADD COLUMN sender_clock_offset_ms INTEGER;
"#,
    // v6: indexes for the group fan-out's acks. `messages_undelivered` holds only the
    // messages some receiver still owes an ack (own messages `pending` or `sent`), so
    // marking them `delivered` no longer walks a conversation's whole history on every
    // ack; `group_delivery_slowest` finds the member furthest behind without sorting
    // every member's cursor.
    r#"
CREATE INDEX messages_undelivered ON messages (conversation_id, hlc, message_id)
    WHERE status IN ('pending', 'sent');
CREATE INDEX group_delivery_slowest ON group_delivery (conversation_id, acked_hlc, acked_message_id);
"#,
    // v7: read receipts. Per conversation and reader (this node and every peer that
    // sent a `receipt.read`), the order key of the newest message read; statuses
    // (`read`, "read by k of n") are computed from these, never stored per message.
    // `receipt_outbox` names the receipt envelope still waiting in the outbox per
    // conversation and recipient, so a newer one replaces it (`receipts::queue`).
    r#"
CREATE TABLE read_positions (
    conversation_id TEXT NOT NULL,
    reader_id       TEXT NOT NULL,
    read_hlc        INTEGER NOT NULL,
    read_message_id TEXT NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, reader_id)
) STRICT, WITHOUT ROWID;
CREATE TABLE receipt_outbox (
    conversation_id TEXT NOT NULL,
    peer_id         TEXT NOT NULL,
    envelope_id     TEXT NOT NULL,
    PRIMARY KEY (conversation_id, peer_id)
) STRICT, WITHOUT ROWID;
"#,
    // v8: node ids derived from keys (docs/STORAGE.md, "Identity changes"). Each id
    // that became another: this node's own (`local = 1`: an upgrade from a random id,
    // or a new identity; its statement is announced to every contact) and those
    // colleagues announced (`local = 0`: what arrives later under the old id is
    // re-attached too).
    r#"
CREATE TABLE identity_changes (
    old_id     TEXT PRIMARY KEY,
    new_id     TEXT NOT NULL,
    local      INTEGER NOT NULL CHECK (local IN (0, 1)),
    changed_at INTEGER NOT NULL
) STRICT;
"#,
    // v9: the author's signature of a message and the author's public keys
    // (`sig ‖ keys`, 64 + 64 bytes; docs/PROTOCOL.md "Signatures"), kept so any member
    // can relay the message with its proof. NULL for messages from before.
    r#"
ALTER TABLE messages ADD COLUMN signature BLOB CHECK (signature IS NULL OR length(signature) = 128);
"#,
    // v10: files (issue 17). `attachments` describes each file of every file message
    // (the message's text holds the same, signed; these rows make it findable by file);
    // `file_downloads` is this node's choice to fetch a file's content (1) or not (0),
    // so downloads resume after a restart. No backfill: no file message predates v10.
    r#"
CREATE TABLE attachments (
    message_id      TEXT NOT NULL,
    position        INTEGER NOT NULL,
    conversation_id TEXT NOT NULL,
    file_id         TEXT NOT NULL,
    manifest_hash   TEXT NOT NULL,
    size            INTEGER NOT NULL,
    chunk_size      INTEGER NOT NULL,
    name            TEXT NOT NULL,
    path            TEXT,
    mime            TEXT NOT NULL,
    thumbnail       TEXT,
    PRIMARY KEY (message_id, position)
) STRICT;
CREATE INDEX attachments_by_file ON attachments (file_id);

CREATE TABLE file_downloads (
    file_id    TEXT PRIMARY KEY,
    wanted     INTEGER NOT NULL CHECK (wanted IN (0, 1)),
    updated_at INTEGER NOT NULL
) STRICT;
"#,
    // v11: files this node's user withdrew (stopped sending: the sender's "cancel"),
    // served to nobody until offered again — kept so a restart does not resume an
    // upload the user stopped.
    r#"
CREATE TABLE file_withdrawals (
    file_id      TEXT PRIMARY KEY,
    withdrawn_at INTEGER NOT NULL
) STRICT;
"#,
];

pub(crate) fn latest_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// Brings the schema to the latest version; returns the version found before.
pub(crate) fn migrate(conn: &mut Connection) -> Result<i64, StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let found: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > latest_version() {
        return Err(StoreError::TooNew {
            path: Default::default(),
            found,
            supported: latest_version(),
        });
    }
    let start = usize::try_from(found).unwrap_or(0);
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(start) {
        let version = index as i64 + 1;
        tx.execute_batch(sql)
            .map_err(|source| StoreError::Migration { version, source })?;
        tx.pragma_update(None, "user_version", version)
            .map_err(|source| StoreError::Migration { version, source })?;
        tracing::info!(version, "database migrated");
    }
    if found == 0 {
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    }
    tx.commit()?;
    Ok(found)
}
