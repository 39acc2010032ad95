//! The messenger's view model: plain functions over the API types (sorting, merging
//! live updates, day grouping, unread totals, filtering), so every rule is tested
//! natively and the components only render what these return.

use api_types::{ContactView, ConversationKind, ConversationView, MessageStatus, MessageView};

const DAY_MS: i64 = 86_400_000;

/// Newest activity first; ties by name then id, so the order never flickers.
pub fn sort_conversations(list: &mut [ConversationView]) {
    list.sort_by(|a, b| {
        b.last_activity_at
            .cmp(&a.last_activity_at)
            .then_with(|| a.name.cmp(&b.name))
            .then_with(|| a.id.cmp(&b.id))
    });
}

/// Inserts `message` at its place by `order`, or replaces the copy with the same id.
/// Applying the same message twice (the send answer and its `message.new` event) leaves
/// one copy. A replacement never moves a status backwards (a late `pending` copy must not
/// undo a `delivered` event that overtook it).
pub fn merge_message(list: &mut Vec<MessageView>, message: MessageView) {
    if let Some(i) = list.iter().position(|m| m.id == message.id) {
        let status = newest_status(list[i].status, message.status);
        // "Read by k of n" only grows; a copy without it (an event) keeps the known one.
        let read_by = match (list[i].read_by, message.read_by) {
            (Some(old), Some(new)) if old.of == new.of && old.count > new.count => Some(old),
            (old, new) => new.or(old),
        };
        list[i] = MessageView {
            status,
            read_by,
            ..message
        };
        // Its order is the same on every node, but keep the list sorted even if not.
        list.sort_by(|a, b| a.order.cmp(&b.order));
        return;
    }
    let at = list.partition_point(|m| m.order <= message.order);
    list.insert(at, message);
}

/// Merges a page (or any batch) of messages; returns how many were new.
pub fn merge_messages(list: &mut Vec<MessageView>, page: Vec<MessageView>) -> usize {
    let before = list.len();
    for m in page {
        merge_message(list, m);
    }
    list.len() - before
}

/// The later of two states of one message. `failed` → `pending` happens (a retry), so a
/// retry is allowed to move a failed message back; otherwise states only advance.
pub fn newest_status(current: MessageStatus, incoming: MessageStatus) -> MessageStatus {
    fn rank(s: MessageStatus) -> u8 {
        match s {
            MessageStatus::Pending => 0,
            MessageStatus::Sent => 1,
            MessageStatus::Delivered => 3,
            MessageStatus::Failed => 2,
            MessageStatus::Read => 4,
        }
    }
    match (current, incoming) {
        (MessageStatus::Failed, MessageStatus::Pending | MessageStatus::Sent) => incoming,
        _ if rank(incoming) >= rank(current) => incoming,
        _ => current,
    }
}

/// Applies a `message.status` event; returns whether the message was in the list.
pub fn set_status(list: &mut [MessageView], message_id: &str, status: MessageStatus) -> bool {
    match list.iter_mut().find(|m| m.id == message_id) {
        Some(m) => {
            m.status = newest_status(m.status, status);
            true
        }
        None => false,
    }
}

/// A DM's read receipt: every outgoing message up to `order` (the reader's position)
/// is read. A failed one stays failed (it never arrived). Returns whether any changed.
pub fn mark_read_up_to(list: &mut [MessageView], order: &str) -> bool {
    let mut changed = false;
    for m in list
        .iter_mut()
        .filter(|m| m.outgoing && m.order.as_str() <= order)
    {
        if m.status != MessageStatus::Failed && m.status != MessageStatus::Read {
            m.status = MessageStatus::Read;
            changed = true;
        }
    }
    changed
}

/// What the conversation list needs after a `message.new` event.
#[derive(Debug, PartialEq, Eq)]
pub enum ListUpdate {
    Updated,
    /// The conversation is not in the list yet (a first message from someone): refetch.
    Unknown,
}

/// Puts `message` into its conversation's row: last message, activity time and, for a
/// message from someone else that is not being looked at, one more unread. Idempotent:
/// a message already shown as the last one changes nothing.
pub fn apply_new_message(
    list: &mut [ConversationView],
    message: &MessageView,
    viewing: bool,
) -> ListUpdate {
    let Some(conv) = list.iter_mut().find(|c| c.id == message.conversation_id) else {
        return ListUpdate::Unknown;
    };
    let seen = conv
        .last_message
        .as_ref()
        .is_some_and(|last| last.id == message.id || last.order > message.order);
    if conv
        .last_message
        .as_ref()
        .is_some_and(|l| l.id == message.id)
    {
        if let Some(last) = conv.last_message.as_mut() {
            last.status = newest_status(last.status, message.status);
        }
        return ListUpdate::Updated;
    }
    if !seen {
        conv.last_message = Some(message.clone());
        conv.last_activity_at = conv.last_activity_at.max(message.sent_at);
        if !message.outgoing && !viewing {
            conv.unread += 1;
        }
    }
    sort_conversations(list);
    ListUpdate::Updated
}

pub fn apply_status(
    list: &mut [ConversationView],
    conversation_id: &str,
    message_id: &str,
    status: MessageStatus,
) {
    if let Some(last) = list
        .iter_mut()
        .filter(|c| c.id == conversation_id)
        .filter_map(|c| c.last_message.as_mut())
        .find(|m| m.id == message_id)
    {
        last.status = newest_status(last.status, status);
    }
}

pub fn apply_read(list: &mut [ConversationView], conversation_id: &str) {
    for c in list.iter_mut().filter(|c| c.id == conversation_id) {
        c.unread = 0;
    }
}

pub fn unread_of(list: &[ConversationView], conversation_id: &str) -> u32 {
    list.iter()
        .find(|c| c.id == conversation_id)
        .map_or(0, |c| c.unread)
}

pub fn unread_total(list: &[ConversationView]) -> u32 {
    list.iter().map(|c| c.unread).sum()
}

/// `(3) lanchat`, or just `lanchat` with nothing unread; large counts are capped.
pub fn document_title(unread: u32, app: &str) -> String {
    match unread {
        0 => app.to_string(),
        1..=99 => format!("({unread}) {app}"),
        _ => format!("(99+) {app}"),
    }
}

/// The text of an unread badge.
pub fn badge_text(unread: u32) -> String {
    if unread > 99 {
        "99+".into()
    } else {
        unread.to_string()
    }
}

pub fn groups(list: &[ConversationView]) -> Vec<ConversationView> {
    list.iter()
        .filter(|c| c.kind == ConversationKind::Group)
        .cloned()
        .collect()
}

/// Contacts whose name, address or node id contains every word of `query` (any case).
/// The order of the API (self first, then online, then by name) is kept.
pub fn filter_contacts(list: &[ContactView], query: &str) -> Vec<ContactView> {
    let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
    list.iter()
        .filter(|c| {
            let hay = format!(
                "{} {} {}",
                c.display_name.to_lowercase(),
                c.address.as_deref().unwrap_or("").to_lowercase(),
                c.peer_id.to_lowercase()
            );
            words.iter().all(|w| hay.contains(w.as_str()))
        })
        .cloned()
        .collect()
}

/// The one-line preview of a message in the chat list: first non-empty line, whitespace
/// collapsed, cut at `max` characters with an ellipsis.
pub fn preview(text: &str, max: usize) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let collapsed = line.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() > max {
        let cut: String = collapsed.chars().take(max.saturating_sub(1)).collect();
        format!("{}…", cut.trim_end())
    } else {
        collapsed
    }
}

/// The day (days since 1970-01-01 in local time) of a Unix-ms time, given the
/// timezone offset the browser reports for it (`Date.getTimezoneOffset`: minutes,
/// UTC minus local).
pub fn local_day(unix_ms: u64, tz_offset_min: f64) -> i64 {
    let local = unix_ms as i64 - (tz_offset_min * 60_000.0) as i64;
    local.div_euclid(DAY_MS)
}

/// One row of a conversation's history: a day separator, the new-messages line or a
/// message.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    Day {
        day: i64,
        first_ms: u64,
    },
    /// "New messages": above the first message that was unread when the conversation
    /// was opened.
    Unread,
    Message {
        message: MessageView,
        show_sender: bool,
    },
}

impl Row {
    /// A key for keyed rendering that changes whenever the row must be redrawn.
    pub fn key(&self) -> String {
        match self {
            Row::Day { day, .. } => format!("day:{day}"),
            Row::Unread => "unread".into(),
            Row::Message {
                message,
                show_sender,
            } => format!("msg:{}:{:?}:{}", message.id, message.status, show_sender),
        }
    }
}

/// The history as rows: a separator before the first message of every day; in a group,
/// the sender's name above each run of messages from the same person (never for our own).
pub fn timeline(
    messages: &[MessageView],
    kind: ConversationKind,
    day_of: impl Fn(u64) -> i64,
) -> Vec<Row> {
    let mut rows = Vec::with_capacity(messages.len() + 4);
    let mut last_day = None;
    let mut last_sender: Option<&str> = None;
    for m in messages {
        let day = day_of(m.sent_at);
        if last_day != Some(day) {
            rows.push(Row::Day {
                day,
                first_ms: m.sent_at,
            });
            last_day = Some(day);
            last_sender = None;
        }
        let show_sender = kind == ConversationKind::Group
            && !m.outgoing
            && last_sender != Some(m.sender.as_str());
        last_sender = Some(m.sender.as_str());
        rows.push(Row::Message {
            message: m.clone(),
            show_sender,
        });
    }
    rows
}

/// The first of the last `unread` messages from others: where "New messages" goes.
/// When fewer are loaded, the oldest loaded one from others.
pub fn first_unread(messages: &[MessageView], unread: u32) -> Option<String> {
    if unread == 0 {
        return None;
    }
    let mut found = None;
    let mut count = 0;
    for m in messages.iter().rev().filter(|m| !m.outgoing) {
        found = Some(m.id.clone());
        count += 1;
        if count == unread {
            break;
        }
    }
    found
}

/// Puts the "New messages" row right above the message `first_unread`.
pub fn mark_unread(rows: &mut Vec<Row>, first_unread: Option<&str>) {
    let Some(id) = first_unread else {
        return;
    };
    if let Some(at) = rows
        .iter()
        .position(|r| matches!(r, Row::Message { message, .. } if message.id == id))
    {
        rows.insert(at, Row::Unread);
    }
}

/// How a day is named above its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayName {
    Today,
    Yesterday,
    /// Within the last week: the weekday is enough.
    Weekday,
    Date,
}

pub fn day_name(day: i64, today: i64) -> DayName {
    match today - day {
        0 => DayName::Today,
        1 => DayName::Yesterday,
        2..=6 => DayName::Weekday,
        _ => DayName::Date,
    }
}

/// What the composer does with a key press.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComposerKey {
    Send,
    /// Let the text area insert the newline (Shift+Enter) or the IME finish a word.
    Default,
}

/// Enter sends; Shift+Enter is a newline; an Enter that confirms an IME composition
/// (typing Chinese) must never send.
pub fn composer_key(key: &str, shift: bool, composing: bool) -> ComposerKey {
    if key == "Enter" && !shift && !composing {
        ComposerKey::Send
    } else {
        ComposerKey::Default
    }
}

/// The text to send: surrounding blank lines and trailing spaces go, inner lines and
/// indentation stay. `None` when nothing is left.
pub fn outgoing_text(draft: &str) -> Option<String> {
    let trimmed = draft.trim_matches(|c: char| c == '\n' || c == '\r');
    let lines: Vec<&str> = trimmed.lines().map(str::trim_end).collect();
    let text = lines.join("\n");
    (!text.trim().is_empty()).then_some(text)
}

/// An `@name` being typed: where its `@` is (a byte offset in the draft) and what
/// follows it up to the caret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MentionQuery {
    pub at: usize,
    pub query: String,
}

/// The longest `@…` worth completing: a display name is at most 64 characters.
const MENTION_QUERY_MAX: usize = 64;

/// The `@name` the caret (a byte offset) is in, if any: an `@` at the start or after a
/// space or newline, then up to 64 characters on the same line. Spaces may follow (names
/// have them: "@Li Na"); the candidates decide whether anything still matches.
pub fn mention_query(draft: &str, caret: usize) -> Option<MentionQuery> {
    let before = draft.get(..caret)?;
    let line = before.rsplit('\n').next().unwrap_or(before);
    let line_start = caret - line.len();
    for (i, c) in line.char_indices().rev() {
        if c == '@' {
            let query = &line[i + 1..];
            let starts_word = line[..i]
                .chars()
                .next_back()
                .is_none_or(char::is_whitespace);
            if !starts_word || query.chars().count() > MENTION_QUERY_MAX {
                return None;
            }
            return Some(MentionQuery {
                at: line_start + i,
                query: query.to_string(),
            });
        }
    }
    None
}

/// The names to offer for `query`: those starting with it, then those with a later word
/// starting with it (any case), each once, in the given order within each kind; at most
/// `limit`. A query the whole of a name already equals offers nothing more to complete.
pub fn mention_candidates(names: &[String], query: &str, limit: usize) -> Vec<String> {
    let q = query.to_lowercase();
    let mut first = Vec::new();
    let mut later = Vec::new();
    for name in names {
        let n = name.trim();
        let lower = n.to_lowercase();
        if n.is_empty()
            || lower == q
            || first.contains(&n.to_string())
            || later.contains(&n.to_string())
        {
            continue;
        }
        if lower.starts_with(&q) {
            first.push(n.to_string());
        } else if !q.is_empty() && lower.split_whitespace().skip(1).any(|w| w.starts_with(&q)) {
            later.push(n.to_string());
        }
    }
    first.extend(later);
    first.truncate(limit);
    first
}

/// The draft with the `@query` before `caret` replaced by `@name ` and the caret (a
/// byte offset) after it.
pub fn complete_mention(
    draft: &str,
    mention: &MentionQuery,
    caret: usize,
    name: &str,
) -> (String, usize) {
    let caret = caret.min(draft.len());
    let at = mention.at.min(caret);
    let inserted = format!("@{name} ");
    let rest = draft[caret..].strip_prefix(' ').unwrap_or(&draft[caret..]);
    let text = format!("{}{inserted}{rest}", &draft[..at]);
    (text, at + inserted.len())
}

/// A byte offset in `text` from a position counted in UTF-16 code units (what a text
/// area's `selectionStart` is); a position inside a character rounds down.
pub fn byte_offset(text: &str, utf16: usize) -> usize {
    let mut units = 0;
    for (i, c) in text.char_indices() {
        if units + c.len_utf16() > utf16 {
            return i;
        }
        units += c.len_utf16();
    }
    text.len()
}

/// The UTF-16 position of a byte offset in `text` (for `setSelectionRange`).
pub fn utf16_offset(text: &str, byte: usize) -> usize {
    text.get(..byte.min(text.len()))
        .map_or(0, |t| t.encode_utf16().count())
}

/// Splits `text` into pieces, marking the ones that match a word of `query` (any case),
/// for highlighting search hits.
pub fn highlight(text: &str, query: &str) -> Vec<(String, bool)> {
    let words: Vec<String> = query
        .split_whitespace()
        .map(str::to_lowercase)
        .filter(|w| !w.is_empty())
        .collect();
    let chars: Vec<char> = text.chars().collect();
    let lower: Vec<char> = chars
        .iter()
        .map(|c| c.to_lowercase().next().unwrap_or(*c))
        .collect();
    let mut marked = vec![false; chars.len()];
    for w in &words {
        let w: Vec<char> = w.chars().collect();
        if w.is_empty() || w.len() > lower.len() {
            continue;
        }
        for start in 0..=lower.len() - w.len() {
            if lower[start..start + w.len()] == w[..] {
                marked[start..start + w.len()]
                    .iter_mut()
                    .for_each(|m| *m = true);
            }
        }
    }
    let mut out: Vec<(String, bool)> = Vec::new();
    for (c, m) in chars.into_iter().zip(marked) {
        match out.last_mut() {
            Some((s, last)) if *last == m => s.push(c),
            _ => out.push((c.to_string(), m)),
        }
    }
    out
}

/// A conversation id or message id as one URL path segment (ids are `dm:lan:…`).
pub fn path_segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query-string value.
pub fn query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Up to two letters for an avatar: the initials of the first two words, or the first
/// character of a single word (a Chinese name shows its first character).
pub fn initials(name: &str) -> String {
    let words: Vec<&str> = name.split_whitespace().collect();
    let firsts: String = words
        .iter()
        .take(2)
        .filter_map(|w| w.chars().next())
        .collect();
    let out = if words.len() >= 2 && firsts.chars().all(char::is_alphanumeric) {
        firsts
    } else {
        words
            .first()
            .and_then(|w| w.chars().next())
            .map(String::from)
            .unwrap_or_else(|| "?".into())
    };
    out.to_uppercase()
}

/// How many avatar colours the style sheet has (`.avatar.tone-0` …).
pub const AVATAR_TONES: u32 = 8;

/// A stable colour for an avatar, from the user's id (a class, since the page's
/// Content-Security-Policy allows no inline styles).
pub fn avatar_tone(id: &str) -> String {
    let hash = id.bytes().fold(2_166_136_261_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16_777_619)
    });
    format!("tone-{}", hash % AVATAR_TONES)
}

#[cfg(test)]
mod receipt_tests {
    use super::*;

    fn mine(id: &str, order: &str, status: MessageStatus) -> MessageView {
        MessageView {
            id: id.into(),
            conversation_id: "dm:lan:B".into(),
            sender: "lan:A".into(),
            sender_name: "A".into(),
            outgoing: true,
            text: "t".into(),
            status,
            sent_at: 0,
            order: order.into(),
            read_by: None,
            attachments: Vec::new(),
        }
    }

    #[test]
    fn a_receipt_marks_outgoing_messages_up_to_its_position_read() {
        let mut list = vec![
            mine("1", "0001", MessageStatus::Delivered),
            mine("2", "0002", MessageStatus::Failed),
            mine("3", "0003", MessageStatus::Sent),
            mine("4", "0004", MessageStatus::Delivered),
        ];
        let mut theirs = mine("5", "0002a", MessageStatus::Delivered);
        theirs.outgoing = false;
        list.push(theirs);
        assert!(mark_read_up_to(&mut list, "0003"));
        let statuses: Vec<_> = list.iter().map(|m| m.status).collect();
        assert_eq!(
            statuses,
            [
                MessageStatus::Read,
                MessageStatus::Failed,
                MessageStatus::Read,
                MessageStatus::Delivered,
                MessageStatus::Delivered
            ]
        );
        assert!(!mark_read_up_to(&mut list, "0003"), "idempotent");
        // A later `delivered` (an ack after the receipt) never moves it back.
        assert!(set_status(&mut list, "1", MessageStatus::Delivered));
        assert_eq!(list[0].status, MessageStatus::Read);
    }

    #[test]
    fn read_by_only_grows_and_survives_copies_without_it() {
        let mut g = mine("1", "0001", MessageStatus::Delivered);
        g.read_by = Some(api_types::ReadBy { count: 2, of: 3 });
        let mut list = vec![g.clone()];
        let mut older = g.clone();
        older.read_by = Some(api_types::ReadBy { count: 1, of: 3 });
        merge_message(&mut list, older);
        assert_eq!(list[0].read_by, Some(api_types::ReadBy { count: 2, of: 3 }));
        let mut event = g.clone();
        event.read_by = None;
        merge_message(&mut list, event);
        assert_eq!(list[0].read_by, Some(api_types::ReadBy { count: 2, of: 3 }));
        let mut newer = g;
        newer.read_by = Some(api_types::ReadBy { count: 3, of: 3 });
        merge_message(&mut list, newer);
        assert_eq!(list[0].read_by, Some(api_types::ReadBy { count: 3, of: 3 }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str, order: &str, sent_at: u64) -> MessageView {
        MessageView {
            id: id.into(),
            conversation_id: "dm:lan:B".into(),
            sender: "lan:B".into(),
            sender_name: "bravo".into(),
            outgoing: false,
            text: format!("text {id}"),
            status: MessageStatus::Delivered,
            sent_at,
            order: order.into(),
            read_by: None,
            attachments: Vec::new(),
        }
    }

    fn conv(id: &str, at: u64, unread: u32) -> ConversationView {
        ConversationView {
            id: id.into(),
            kind: ConversationKind::Dm,
            name: id.into(),
            last_message: None,
            unread,
            last_activity_at: at,
            peer_id: None,
        }
    }

    fn contact(name: &str, address: &str, peer_id: &str) -> ContactView {
        ContactView {
            user_id: format!("lan:{peer_id}"),
            peer_id: peer_id.into(),
            display_name: name.into(),
            online: true,
            address: Some(address.into()),
            last_seen_at: None,
            blocked: false,
            is_self: false,
            presence: api_types::Presence::Online,
            conversation_id: format!("dm:lan:{peer_id}"),
        }
    }

    fn ids(list: &[MessageView]) -> Vec<&str> {
        list.iter().map(|m| m.id.as_str()).collect()
    }

    #[test]
    fn conversations_sort_by_activity_newest_first_stably() {
        let mut list = vec![conv("b", 10, 0), conv("a", 30, 0), conv("c", 10, 0)];
        sort_conversations(&mut list);
        let order: Vec<_> = list.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(order, ["a", "b", "c"]);
    }

    #[test]
    fn merging_is_idempotent_and_keeps_order() {
        let mut list = vec![msg("1", "001", 1), msg("3", "003", 3)];
        merge_message(&mut list, msg("2", "002", 2));
        merge_message(&mut list, msg("2", "002", 2));
        merge_message(&mut list, msg("4", "004", 4));
        merge_message(&mut list, msg("0", "000", 0));
        assert_eq!(ids(&list), ["0", "1", "2", "3", "4"]);

        // An older page that overlaps what is shown adds only the missing ones.
        let added = merge_messages(
            &mut list,
            vec![msg("-1", "-01", 0), msg("0", "000", 0), msg("1", "001", 1)],
        );
        assert_eq!(added, 1);
        assert_eq!(ids(&list)[0], "-1");
    }

    #[test]
    fn a_late_copy_never_moves_a_status_backwards() {
        let mut sent = msg("1", "001", 1);
        sent.outgoing = true;
        sent.status = MessageStatus::Delivered;
        let mut list = vec![sent.clone()];
        // The send answer (pending) arrives after the delivered event.
        merge_message(
            &mut list,
            MessageView {
                status: MessageStatus::Pending,
                ..sent.clone()
            },
        );
        assert_eq!(list[0].status, MessageStatus::Delivered);
        assert!(set_status(&mut list, "1", MessageStatus::Sent));
        assert_eq!(list[0].status, MessageStatus::Delivered);
        assert!(!set_status(&mut list, "nope", MessageStatus::Sent));

        // A retry moves a failed message back to pending, then forward again.
        list[0].status = MessageStatus::Failed;
        assert!(set_status(&mut list, "1", MessageStatus::Pending));
        assert_eq!(list[0].status, MessageStatus::Pending);
        set_status(&mut list, "1", MessageStatus::Failed);
        assert_eq!(list[0].status, MessageStatus::Failed);
    }

    #[test]
    fn a_new_message_updates_its_conversation_once() {
        let mut list = vec![conv("dm:lan:A", 50, 0), conv("dm:lan:B", 10, 2)];
        let m = msg("9", "009", 100);
        assert_eq!(apply_new_message(&mut list, &m, false), ListUpdate::Updated);
        assert_eq!(apply_new_message(&mut list, &m, false), ListUpdate::Updated);
        assert_eq!(list[0].id, "dm:lan:B", "moved to the top");
        assert_eq!(list[0].unread, 3, "counted once");
        assert_eq!(list[0].last_activity_at, 100);
        assert_eq!(
            list[0].last_message.as_ref().map(|m| m.id.as_str()),
            Some("9")
        );

        // Viewing it, or our own message: no unread.
        let mut own = msg("10", "010", 110);
        own.outgoing = true;
        apply_new_message(&mut list, &own, false);
        apply_new_message(&mut list, &msg("11", "011", 120), true);
        assert_eq!(list[0].unread, 3);

        // An older message (a late event) does not replace the preview.
        apply_new_message(&mut list, &msg("5", "005", 5), false);
        assert_eq!(
            list[0].last_message.as_ref().map(|m| m.id.as_str()),
            Some("11")
        );

        let mut other = msg("1", "001", 1);
        other.conversation_id = "dm:lan:C".into();
        assert_eq!(
            apply_new_message(&mut list, &other, false),
            ListUpdate::Unknown
        );
    }

    #[test]
    fn status_and_read_events_update_the_list() {
        let mut c = conv("dm:lan:B", 10, 4);
        let mut m = msg("1", "001", 1);
        m.status = MessageStatus::Pending;
        c.last_message = Some(m);
        let mut list = vec![c, conv("dm:lan:C", 5, 1)];
        apply_status(&mut list, "dm:lan:B", "1", MessageStatus::Delivered);
        assert_eq!(
            list[0].last_message.as_ref().map(|m| m.status),
            Some(MessageStatus::Delivered)
        );
        assert_eq!(unread_total(&list), 5);
        apply_read(&mut list, "dm:lan:B");
        assert_eq!(unread_of(&list, "dm:lan:B"), 0);
        assert_eq!(unread_total(&list), 1);
    }

    #[test]
    fn unread_total_goes_into_the_title() {
        assert_eq!(document_title(0, "lanchat"), "lanchat");
        assert_eq!(document_title(3, "lanchat"), "(3) lanchat");
        assert_eq!(document_title(250, "lanchat"), "(99+) lanchat");
        assert_eq!(badge_text(7), "7");
        assert_eq!(badge_text(100), "99+");
    }

    #[test]
    fn groups_are_the_group_conversations() {
        let mut g = conv("group:X", 1, 0);
        g.kind = ConversationKind::Group;
        let list = vec![conv("dm:lan:A", 2, 0), g];
        let found = groups(&list);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, "group:X");
    }

    #[test]
    fn contacts_filter_by_name_address_or_id_in_any_case() {
        let list = vec![
            contact("Front Desk", "10.1.2.7:19123", "01AAA"),
            contact("王小明", "10.1.2.8:19123", "01BBB"),
        ];
        let names = |q: &str| -> Vec<String> {
            filter_contacts(&list, q)
                .into_iter()
                .map(|c| c.display_name)
                .collect()
        };
        assert_eq!(names(""), ["Front Desk", "王小明"]);
        assert_eq!(names("front"), ["Front Desk"]);
        assert_eq!(names("desk FRONT"), ["Front Desk"]);
        assert_eq!(names("小明"), ["王小明"]);
        assert_eq!(names("10.1.2.8"), ["王小明"]);
        assert_eq!(names("01bbb"), ["王小明"]);
        assert!(names("nobody").is_empty());
    }

    #[test]
    fn previews_are_one_short_line() {
        assert_eq!(preview("\n  hello   world \nsecond", 40), "hello world");
        assert_eq!(preview("abcdefghij", 5), "abcd…");
        assert_eq!(preview("你好世界你好世界", 5), "你好世界…");
        assert_eq!(preview("", 5), "");
    }

    #[test]
    fn days_follow_the_local_timezone() {
        // 2026-11-23 23:30 UTC is already the 24th in UTC+8 (offset -480).
        let ms = 1_795_476_600_000;
        assert_eq!(local_day(ms, 0.0) + 1, local_day(ms, -480.0));
        assert_eq!(local_day(0, 0.0), 0);
        assert_eq!(local_day(0, 60.0), -1, "before 1970 in UTC-1");
    }

    #[test]
    fn history_gets_day_separators_and_group_sender_names() {
        let day = |ms: u64| (ms / 100) as i64;
        let mut own = msg("3", "003", 120);
        own.outgoing = true;
        own.sender = "lan:A".into();
        let mut carol = msg("4", "004", 130);
        carol.sender = "lan:C".into();
        let messages = vec![
            msg("1", "001", 10),
            msg("2", "002", 110),
            own,
            carol,
            msg("5", "005", 140),
            msg("6", "006", 150),
        ];
        let rows = timeline(&messages, ConversationKind::Group, day);
        let shape: Vec<String> = rows
            .iter()
            .map(|r| match r {
                Row::Day { day, .. } => format!("day{day}"),
                Row::Unread => "new".into(),
                Row::Message {
                    message,
                    show_sender,
                } => format!("{}{}", message.id, if *show_sender { "*" } else { "" }),
            })
            .collect();
        assert_eq!(shape, ["day0", "1*", "day1", "2*", "3", "4*", "5*", "6"]);

        // In a DM there are no sender names.
        let dm = timeline(&messages, ConversationKind::Dm, day);
        assert!(dm.iter().all(|r| !matches!(
            r,
            Row::Message {
                show_sender: true,
                ..
            }
        )));
        // Keys are unique and change with the status.
        let keys: std::collections::BTreeSet<_> = dm.iter().map(Row::key).collect();
        assert_eq!(keys.len(), dm.len());
        let mut failed = messages[0].clone();
        failed.status = MessageStatus::Failed;
        assert_ne!(
            timeline(&[failed], ConversationKind::Dm, day)[1].key(),
            dm[1].key()
        );
    }

    #[test]
    fn new_messages_are_marked_above_the_first_unread() {
        let mut own = msg("3", "003", 3);
        own.outgoing = true;
        let messages = vec![
            msg("1", "001", 1),
            msg("2", "002", 2),
            own,
            msg("4", "004", 4),
        ];
        assert_eq!(first_unread(&messages, 0), None);
        assert_eq!(first_unread(&messages, 1).as_deref(), Some("4"));
        // Our own messages in between do not count.
        assert_eq!(first_unread(&messages, 2).as_deref(), Some("2"));
        assert_eq!(
            first_unread(&messages, 9).as_deref(),
            Some("1"),
            "more than loaded"
        );

        let mut rows = timeline(&messages, ConversationKind::Dm, |_| 0);
        mark_unread(&mut rows, Some("2"));
        let at = rows.iter().position(|r| *r == Row::Unread);
        assert_eq!(at, Some(2), "after the day and message 1: {rows:?}");
        let mut none = timeline(&messages, ConversationKind::Dm, |_| 0);
        mark_unread(&mut none, Some("gone"));
        assert!(!none.contains(&Row::Unread));
    }

    #[test]
    fn days_are_named_relative_to_today() {
        assert_eq!(day_name(100, 100), DayName::Today);
        assert_eq!(day_name(99, 100), DayName::Yesterday);
        assert_eq!(day_name(95, 100), DayName::Weekday);
        assert_eq!(day_name(90, 100), DayName::Date);
        assert_eq!(day_name(101, 100), DayName::Date, "a clock ahead of ours");
    }

    #[test]
    fn enter_sends_shift_enter_and_ime_do_not() {
        assert_eq!(composer_key("Enter", false, false), ComposerKey::Send);
        assert_eq!(composer_key("Enter", true, false), ComposerKey::Default);
        assert_eq!(composer_key("Enter", false, true), ComposerKey::Default);
        assert_eq!(composer_key("a", false, false), ComposerKey::Default);
    }

    #[test]
    fn outgoing_text_keeps_inner_lines() {
        assert_eq!(outgoing_text("  \n\n"), None);
        assert_eq!(outgoing_text(""), None);
        assert_eq!(
            outgoing_text("\nline one  \n  indented\n\nlast\n\n").as_deref(),
            Some("line one\n  indented\n\nlast")
        );
        assert_eq!(outgoing_text("你好").as_deref(), Some("你好"));
    }

    #[test]
    fn search_hits_are_highlighted_in_any_case() {
        assert_eq!(
            highlight("Hello world, hello", "HELLO"),
            vec![
                ("Hello".to_string(), true),
                (" world, ".to_string(), false),
                ("hello".to_string(), true)
            ]
        );
        assert_eq!(
            highlight("今天开会", "开会"),
            vec![("今天".to_string(), false), ("开会".to_string(), true)]
        );
        assert_eq!(highlight("abc", ""), vec![("abc".to_string(), false)]);
        assert!(highlight("", "x").is_empty());
    }

    #[test]
    fn avatars_have_initials_and_a_stable_colour() {
        assert_eq!(initials("front desk"), "FD");
        assert_eq!(initials("Alpha"), "A");
        assert_eq!(initials("王小明"), "王");
        assert_eq!(initials("  "), "?");
        assert_eq!(avatar_tone("lan:01A"), avatar_tone("lan:01A"));
        let tones: std::collections::BTreeSet<_> = (0..100)
            .map(|n| avatar_tone(&format!("lan:01J{n}")))
            .collect();
        assert_eq!(tones.len(), AVATAR_TONES as usize, "every tone is used");
    }

    #[test]
    fn ids_and_queries_are_encoded_for_urls() {
        assert_eq!(path_segment("dm:lan:01ABC"), "dm:lan:01ABC");
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(
            query_value("会议 notes&x"),
            "%E4%BC%9A%E8%AE%AE%20notes%26x"
        );
    }

    #[test]
    fn a_mention_is_found_at_the_caret_after_a_space_or_line_start_only() {
        let q = |d: &str| mention_query(d, d.len());
        assert_eq!(
            q("@br"),
            Some(MentionQuery {
                at: 0,
                query: "br".into()
            })
        );
        assert_eq!(
            q("hi @Li Na"),
            Some(MentionQuery {
                at: 3,
                query: "Li Na".into()
            })
        );
        assert_eq!(
            q("line\n@"),
            Some(MentionQuery {
                at: 5,
                query: String::new()
            })
        );
        assert_eq!(q("mail me@example"), None, "an address is no mention");
        assert_eq!(q("@bravo\nnext"), None, "a mention ends at the line");
        assert_eq!(q("no mention"), None);
        assert_eq!(q(&format!("@{}", "x".repeat(65))), None);
        // In the middle of the draft: only what is before the caret counts.
        assert_eq!(
            mention_query("@bra and more", 4),
            Some(MentionQuery {
                at: 0,
                query: "bra".into()
            })
        );
        assert_eq!(mention_query("é@x", 1), None, "not a character boundary");
        // Chinese names, multi-byte text before the @.
        assert_eq!(
            mention_query("你好 @王", "你好 @王".len()),
            Some(MentionQuery {
                at: 7,
                query: "王".into()
            })
        );
    }

    #[test]
    fn candidates_start_with_the_query_first_then_a_later_word_any_case() {
        let names: Vec<String> = [
            "Bravo",
            "alpha desk",
            "Li Na",
            "Bob",
            "Na Li",
            "bravo",
            "王芳",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            mention_candidates(&names, "b", 8),
            ["Bravo", "Bob", "bravo"]
        );
        assert_eq!(mention_candidates(&names, "na", 8), ["Na Li", "Li Na"]);
        assert_eq!(mention_candidates(&names, "DESK", 8), ["alpha desk"]);
        assert_eq!(mention_candidates(&names, "王", 8), ["王芳"]);
        assert_eq!(mention_candidates(&names, "", 2), ["Bravo", "alpha desk"]);
        assert!(
            mention_candidates(&names, "li na", 8).is_empty(),
            "already complete"
        );
        assert!(mention_candidates(&names, "zz", 8).is_empty());
    }

    #[test]
    fn completing_replaces_the_query_and_puts_the_caret_after_one_space() {
        let draft = "hi @bra";
        let m = mention_query(draft, draft.len()).unwrap();
        assert_eq!(
            complete_mention(draft, &m, draft.len(), "bravo"),
            ("hi @bravo ".to_string(), 10)
        );
        // Completed in the middle: the text after the caret stays, without a double space.
        let draft = "@br please";
        let m = mention_query(draft, 3).unwrap();
        assert_eq!(
            complete_mention(draft, &m, 3, "bravo"),
            ("@bravo please".to_string(), 7)
        );
    }

    #[test]
    fn caret_positions_convert_between_utf16_and_bytes() {
        let text = "a😀王b";
        assert_eq!(byte_offset(text, 0), 0);
        assert_eq!(byte_offset(text, 1), 1);
        assert_eq!(
            byte_offset(text, 2),
            1,
            "inside the surrogate pair rounds down"
        );
        assert_eq!(byte_offset(text, 3), 5);
        assert_eq!(byte_offset(text, 4), 8);
        assert_eq!(byte_offset(text, 99), text.len());
        for byte in [0, 1, 5, 8, 9] {
            assert_eq!(byte_offset(text, utf16_offset(text, byte)), byte);
        }
    }
}
