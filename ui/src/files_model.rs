//! Files in chats as plain data (issue 17): sizes, progress, speed and time left as
//! text, live download states merged into the shown messages, the list preview of a
//! file message, the folder of a picked or dropped file, a pasted screenshot's name and
//! the auto-download size in MB. `attachments` renders, `upload` sends.

use api_types::{
    AttachmentView, ConversationView, FileState, FileStatusView, MessageView, WaitingFor,
};

const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];

/// A size as people read it: `512 B`, `1.5 KB`, `20.0 MB`, `1.2 GB` (powers of 1000,
/// like the auto-download setting; one decimal).
pub fn human_size(bytes: u64) -> String {
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    for (i, unit) in UNITS.iter().enumerate() {
        value /= 1000.0;
        // 999 950 bytes round to "1000.0 KB": say "1.0 MB" instead.
        if (value * 10.0).round() < 10_000.0 || i == UNITS.len() - 1 {
            return format!("{value:.1} {unit}");
        }
    }
    format!("{bytes} B")
}

/// A transfer speed: `1.5 MB/s`.
pub fn speed_text(bytes_per_sec: u64) -> String {
    format!("{}/s", human_size(bytes_per_sec))
}

/// Whole percent of a download, never above 100 (an empty file is complete).
pub fn percent(have: u64, size: u64) -> u8 {
    if size == 0 {
        return 100;
    }
    let p = u128::from(have.min(size)) * 100 / u128::from(size);
    u8::try_from(p).unwrap_or(100)
}

/// Seconds left at the current speed; `None` without a speed.
pub fn eta_secs(have: u64, size: u64, bytes_per_sec: Option<u64>) -> Option<u64> {
    let speed = bytes_per_sec.filter(|s| *s > 0)?;
    Some(size.saturating_sub(have).div_ceil(speed))
}

/// A duration as a clock: `0:07`, `12:05`, `1:02:03`.
pub fn duration_text(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// An attachment's state as a status (what the node said when the message was read).
pub fn status_of(a: &AttachmentView) -> FileStatusView {
    FileStatusView {
        file_id: a.file_id.clone(),
        state: a.state,
        waiting_for: a.waiting_for,
        have_bytes: a.have_bytes,
        size: a.size,
        bytes_per_sec: None,
        error: a.error.clone(),
        withdrawn: a.withdrawn,
    }
}

/// What an attachment offers the user in its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileAction {
    /// Not here and not coming by itself: start the download.
    Download,
    /// The download failed: try again.
    Retry,
    Cancel,
    /// Complete here: save a copy through the browser.
    Save,
    /// No peer that has it is online: nothing to click.
    WaitSender,
}

pub fn action_of(s: &FileStatusView) -> FileAction {
    match s.state {
        FileState::Available => FileAction::Save,
        FileState::Fetching => FileAction::Cancel,
        FileState::Failed => FileAction::Retry,
        FileState::Waiting
            if matches!(
                s.waiting_for,
                Some(WaitingFor::Sender | WaitingFor::Withdrawn)
            ) =>
        {
            FileAction::WaitSender
        }
        FileState::Waiting => FileAction::Download,
    }
}

/// What the sender of a file can do about sending it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendingAction {
    /// Stop sending it (`…/withdraw`): receivers that do not have it yet stop getting
    /// it from this node.
    Withdraw,
    /// Send it again (`…/offer`) after stopping.
    Offer,
}

/// Offered on this node's own file messages only, once the file is here (an upload
/// always is; a forwarded one may not be yet).
pub fn sending_action(outgoing: bool, s: &FileStatusView) -> Option<SendingAction> {
    match (outgoing, s.withdrawn, s.state) {
        (false, _, _) => None,
        (true, true, _) => Some(SendingAction::Offer),
        (true, false, FileState::Available) => Some(SendingAction::Withdraw),
        (true, false, _) => None,
    }
}

/// The `data-state` of an attachment (and the tail of its catalog key).
pub fn state_name(s: &FileStatusView) -> &'static str {
    match (s.state, s.waiting_for) {
        (FileState::Available, _) => "available",
        (FileState::Fetching, _) => "fetching",
        (FileState::Failed, _) => "failed",
        (FileState::Waiting, Some(WaitingFor::Sender)) => "waiting_sender",
        (FileState::Waiting, Some(WaitingFor::Withdrawn)) => "waiting_withdrawn",
        (FileState::Waiting, _) => "waiting",
    }
}

fn apply_to(attachments: &mut [AttachmentView], s: &FileStatusView) -> bool {
    let mut changed = false;
    for a in attachments.iter_mut().filter(|a| a.file_id == s.file_id) {
        a.state = s.state;
        a.waiting_for = s.waiting_for;
        a.have_bytes = s.have_bytes;
        a.error = s.error.clone();
        a.withdrawn = s.withdrawn;
        changed = true;
    }
    changed
}

/// Puts a file's new state into every shown message that carries it (one file can be
/// in several messages); `true` when one did.
pub fn apply_file_status(messages: &mut [MessageView], s: &FileStatusView) -> bool {
    let mut changed = false;
    for m in messages.iter_mut() {
        changed |= apply_to(&mut m.attachments, s);
    }
    changed
}

/// The same for the conversation list's last messages.
pub fn apply_file_status_to_list(list: &mut [ConversationView], s: &FileStatusView) -> bool {
    let mut changed = false;
    for m in list.iter_mut().filter_map(|c| c.last_message.as_mut()) {
        changed |= apply_to(&mut m.attachments, s);
    }
    changed
}

/// What the conversation list shows for a message: its text, or for a file message
/// (empty text) `📎 name`, `📎 name +2` for several files.
pub fn message_summary(m: &MessageView) -> String {
    match m.attachments.split_first() {
        None => m.text.clone(),
        Some((first, [])) => format!("📎 {}", first.name),
        Some((first, rest)) => format!("📎 {} +{}", first.name, rest.len()),
    }
}

/// `path/name`, or the name of a single file.
pub fn display_path(a: &AttachmentView) -> String {
    match &a.path {
        Some(p) if !p.is_empty() => format!("{p}/{}", a.name),
        _ => a.name.clone(),
    }
}

/// A file's relative path in a picked or dropped folder (`photos/2026/a.jpg`, or a
/// drop entry's `/photos/2026/a.jpg`) as the upload's name and folder: (`a.jpg`,
/// `photos/2026`). Empty, `.` and `..` components are dropped; `None` without a name.
pub fn split_relative(relative: &str) -> Option<(String, Option<String>)> {
    let mut parts: Vec<&str> = relative
        .split(['/', '\\'])
        .filter(|p| !p.is_empty() && *p != "." && *p != "..")
        .collect();
    let name = parts.pop()?.to_string();
    let folder = (!parts.is_empty()).then(|| parts.join("/"));
    Some((name, folder))
}

/// The name of a pasted image: `screenshot-20261206-223512.png` (local time).
pub fn screenshot_name(date: (u32, u32, u32), time: (u32, u32, u32), mime: &str) -> String {
    let ext = match mime {
        "image/jpeg" => "jpg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        _ => "png",
    };
    let ((y, mo, d), (h, mi, s)) = (date, time);
    format!("screenshot-{y:04}{mo:02}{d:02}-{h:02}{mi:02}{s:02}.{ext}")
}

/// A file's kind, for its badge's colour.
pub fn file_kind(mime: &str, name: &str) -> &'static str {
    let ext = extension(name);
    match mime.split('/').next().unwrap_or("") {
        "image" => "image",
        "video" => "video",
        "audio" => "audio",
        _ if mime == "application/pdf" || ext == "pdf" => "pdf",
        _ if matches!(
            ext.as_str(),
            "zip" | "7z" | "rar" | "gz" | "tgz" | "xz" | "bz2" | "tar"
        ) =>
        {
            "archive"
        }
        "text" => "doc",
        _ if matches!(
            ext.as_str(),
            "doc" | "docx" | "odt" | "xls" | "xlsx" | "ods" | "ppt" | "pptx" | "odp" | "txt" | "md"
        ) =>
        {
            "doc"
        }
        _ => "other",
    }
}

/// The few letters on a file's badge: its extension (`PDF`, `DOCX`), or `FILE`.
/// Letters, not pictures, so it reads the same with any system font.
pub fn file_badge(name: &str) -> String {
    let ext = extension(name);
    if (1..=4).contains(&ext.len()) && ext.chars().all(|c| c.is_ascii_alphanumeric()) {
        ext.to_ascii_uppercase()
    } else {
        "FILE".to_string()
    }
}

fn extension(name: &str) -> String {
    name.rsplit_once('.')
        .filter(|(stem, _)| !stem.is_empty())
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default()
}

/// An attachment the viewer can show full size: an image with a thumbnail.
pub fn is_viewable_image(a: &AttachmentView) -> bool {
    a.mime.starts_with("image/") && a.thumbnail.is_some()
}

const MB: u64 = 1000 * 1000;

/// The auto-download size in the settings field: `20`, `1.5`, `0`.
pub fn mb_text(bytes: u64) -> String {
    if bytes.is_multiple_of(MB) {
        (bytes / MB).to_string()
    } else {
        let text = format!("{:.3}", bytes as f64 / MB as f64);
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// The bytes of a typed MB value (`20`, `1.5`, `0`); `None` for anything else.
pub fn bytes_of_mb(text: &str) -> Option<u64> {
    let text = text.trim().replace(',', ".");
    if text.is_empty() || !text.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let mb: f64 = text.parse().ok()?;
    let bytes = (mb * MB as f64).round();
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use api_types::MessageStatus;

    fn attachment(file_id: &str, name: &str) -> AttachmentView {
        AttachmentView {
            file_id: file_id.into(),
            name: name.into(),
            path: None,
            size: 2000,
            sha256: file_id.into(),
            mime: "image/png".into(),
            state: FileState::Waiting,
            waiting_for: Some(WaitingFor::Download),
            have_bytes: 0,
            thumbnail: Some("data:image/png;base64,AAAA".into()),
            error: None,
            withdrawn: false,
        }
    }

    fn message(id: &str, text: &str, attachments: Vec<AttachmentView>) -> MessageView {
        MessageView {
            id: id.into(),
            conversation_id: "dm:lan:B".into(),
            sender: "lan:B".into(),
            sender_name: "bravo".into(),
            outgoing: false,
            text: text.into(),
            status: MessageStatus::Delivered,
            sent_at: 1,
            order: id.into(),
            read_by: None,
            attachments,
        }
    }

    fn status(file_id: &str, state: FileState, have: u64) -> FileStatusView {
        FileStatusView {
            file_id: file_id.into(),
            state,
            waiting_for: None,
            have_bytes: have,
            size: 2000,
            bytes_per_sec: Some(500),
            error: None,
            withdrawn: false,
        }
    }

    #[test]
    fn sizes_read_as_people_say_them() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(1000), "1.0 KB");
        assert_eq!(human_size(1536), "1.5 KB");
        assert_eq!(human_size(999_950), "1.0 MB");
        assert_eq!(human_size(20_000_000), "20.0 MB");
        assert_eq!(human_size(1_260_000_000), "1.3 GB");
        assert_eq!(human_size(64 << 40), "70.4 TB");
        assert_eq!(speed_text(1_500_000), "1.5 MB/s");
    }

    #[test]
    fn progress_and_time_left() {
        assert_eq!(percent(0, 2000), 0);
        assert_eq!(percent(999, 2000), 49);
        assert_eq!(percent(5000, 2000), 100);
        assert_eq!(percent(0, 0), 100);
        assert_eq!(percent(u64::MAX - 1, u64::MAX), 99);
        assert_eq!(eta_secs(500, 2000, Some(500)), Some(3));
        assert_eq!(eta_secs(500, 2001, Some(500)), Some(4));
        assert_eq!(eta_secs(500, 2000, Some(0)), None);
        assert_eq!(eta_secs(500, 2000, None), None);
        assert_eq!(duration_text(7), "0:07");
        assert_eq!(duration_text(725), "12:05");
        assert_eq!(duration_text(3723), "1:02:03");
    }

    #[test]
    fn only_the_sender_stops_and_resumes_sending() {
        let mut s = status("f", FileState::Available, 2000);
        assert_eq!(sending_action(false, &s), None);
        assert_eq!(sending_action(true, &s), Some(SendingAction::Withdraw));
        s.withdrawn = true;
        assert_eq!(sending_action(true, &s), Some(SendingAction::Offer));
        assert_eq!(sending_action(false, &s), None);
        s.withdrawn = false;
        s.state = FileState::Fetching;
        assert_eq!(sending_action(true, &s), None);
    }

    #[test]
    fn actions_follow_the_state() {
        let mut s = status("f", FileState::Waiting, 0);
        s.waiting_for = Some(WaitingFor::Download);
        assert_eq!(action_of(&s), FileAction::Download);
        assert_eq!(state_name(&s), "waiting");
        s.waiting_for = Some(WaitingFor::Sender);
        assert_eq!(action_of(&s), FileAction::WaitSender);
        assert_eq!(state_name(&s), "waiting_sender");
        s.waiting_for = Some(WaitingFor::Withdrawn);
        assert_eq!(action_of(&s), FileAction::WaitSender);
        assert_eq!(state_name(&s), "waiting_withdrawn");
        s.state = FileState::Fetching;
        assert_eq!(action_of(&s), FileAction::Cancel);
        s.state = FileState::Failed;
        assert_eq!(action_of(&s), FileAction::Retry);
        s.state = FileState::Available;
        assert_eq!(action_of(&s), FileAction::Save);
        let a = attachment("f", "a.png");
        assert_eq!(status_of(&a).state, FileState::Waiting);
        assert_eq!(status_of(&a).size, 2000);
    }

    #[test]
    fn a_status_reaches_every_message_with_the_file() {
        let mut list = vec![
            message(
                "1",
                "",
                vec![attachment("f", "a.png"), attachment("g", "b.png")],
            ),
            message("2", "hello", Vec::new()),
            message("3", "", vec![attachment("f", "a.png")]),
        ];
        let s = status("f", FileState::Fetching, 1000);
        assert!(apply_file_status(&mut list, &s));
        assert_eq!(list[0].attachments[0].state, FileState::Fetching);
        assert_eq!(list[0].attachments[0].have_bytes, 1000);
        assert_eq!(list[0].attachments[0].waiting_for, None);
        assert_eq!(list[0].attachments[1].state, FileState::Waiting);
        assert_eq!(list[2].attachments[0].have_bytes, 1000);
        assert!(!apply_file_status(
            &mut list,
            &status("x", FileState::Failed, 0)
        ));

        let mut convs = vec![ConversationView {
            id: "dm:lan:B".into(),
            kind: api_types::ConversationKind::Dm,
            name: "bravo".into(),
            last_message: Some(list[2].clone()),
            unread: 0,
            last_activity_at: 1,
            peer_id: None,
        }];
        let done = status("f", FileState::Available, 2000);
        assert!(apply_file_status_to_list(&mut convs, &done));
        let last = convs[0]
            .last_message
            .as_ref()
            .map(|m| m.attachments[0].state);
        assert_eq!(last, Some(FileState::Available));
    }

    #[test]
    fn file_messages_preview_their_names() {
        assert_eq!(message_summary(&message("1", "hi", Vec::new())), "hi");
        let one = message("1", "", vec![attachment("f", "a.png")]);
        assert_eq!(message_summary(&one), "📎 a.png");
        let three = message(
            "1",
            "",
            vec![
                attachment("f", "a.png"),
                attachment("g", "b.png"),
                attachment("h", "c.png"),
            ],
        );
        assert_eq!(message_summary(&three), "📎 a.png +2");
        let mut a = attachment("f", "a.jpg");
        assert_eq!(display_path(&a), "a.jpg");
        a.path = Some("photos/2026".into());
        assert_eq!(display_path(&a), "photos/2026/a.jpg");
    }

    #[test]
    fn relative_paths_split_into_name_and_folder() {
        assert_eq!(
            split_relative("photos/2026/a.jpg"),
            Some(("a.jpg".into(), Some("photos/2026".into())))
        );
        assert_eq!(
            split_relative("/photos/a.jpg"),
            Some(("a.jpg".into(), Some("photos".into())))
        );
        assert_eq!(split_relative("a.jpg"), Some(("a.jpg".into(), None)));
        assert_eq!(
            split_relative("../x/./b.txt"),
            Some(("b.txt".into(), Some("x".into())))
        );
        assert_eq!(split_relative(""), None);
        assert_eq!(split_relative("/"), None);
    }

    #[test]
    fn screenshots_are_named_by_their_time() {
        assert_eq!(
            screenshot_name((2026, 12, 6), (9, 5, 3), "image/png"),
            "screenshot-20261206-090503.png"
        );
        assert_eq!(
            screenshot_name((2026, 1, 2), (23, 59, 59), "image/jpeg"),
            "screenshot-20260102-235959.jpg"
        );
    }

    #[test]
    fn badges_by_type() {
        assert_eq!(file_kind("image/png", "a.png"), "image");
        assert_eq!(file_kind("application/pdf", "a"), "pdf");
        assert_eq!(file_kind("application/octet-stream", "b.ZIP"), "archive");
        assert_eq!(file_kind("text/plain", "a.txt"), "doc");
        assert_eq!(file_kind("application/octet-stream", "a.bin"), "other");
        assert_eq!(file_badge("report.pdf"), "PDF");
        assert_eq!(file_badge("a.docx"), "DOCX");
        assert_eq!(file_badge("archive.tar.gz"), "GZ");
        assert_eq!(file_badge("README"), "FILE");
        assert_eq!(file_badge(".bashrc"), "FILE");
        assert_eq!(file_badge("x.longext"), "FILE");
        let mut a = attachment("f", "a.png");
        assert!(is_viewable_image(&a));
        a.thumbnail = None;
        assert!(!is_viewable_image(&a));
    }

    #[test]
    fn auto_download_size_in_mb() {
        assert_eq!(mb_text(20_000_000), "20");
        assert_eq!(mb_text(0), "0");
        assert_eq!(mb_text(1_500_000), "1.5");
        assert_eq!(bytes_of_mb("20"), Some(20_000_000));
        assert_eq!(bytes_of_mb(" 1.5 "), Some(1_500_000));
        assert_eq!(bytes_of_mb("0,5"), Some(500_000));
        assert_eq!(bytes_of_mb("0"), Some(0));
        for bad in ["", "-1", "abc", "1e3", "1.2.3"] {
            assert_eq!(bytes_of_mb(bad), None, "{bad:?}");
        }
    }
}
