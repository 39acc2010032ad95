//! Which incoming messages become a desktop notification, and what it says. Pure rules,
//! so they are tested without a notification service.

use api_types::{DesktopSettings, Language, MessageView};

use super::presence::Presence;

/// Longest preview shown; notification bubbles wrap a line or two.
const PREVIEW_CHARS: usize = 120;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    Outgoing,
    Disabled,
    DoNotDisturb,
    Busy,
    /// The user is looking at the window.
    Attended,
    Muted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Notify { mention: bool },
    Skip(Skip),
}

pub struct Situation<'a> {
    pub settings: &'a DesktopSettings,
    pub presence: Presence,
    /// The window is shown and focused.
    pub attended: bool,
    /// This user's display name, for mentions.
    pub my_name: &'a str,
}

pub fn is_group(conversation_id: &str) -> bool {
    conversation_id.starts_with("group:")
}

pub fn decide(message: &MessageView, now: &Situation<'_>) -> Decision {
    if message.outgoing {
        return Decision::Skip(Skip::Outgoing);
    }
    let s = now.settings;
    if !s.notifications {
        return Decision::Skip(Skip::Disabled);
    }
    if s.do_not_disturb {
        return Decision::Skip(Skip::DoNotDisturb);
    }
    if now.presence == Presence::Busy {
        return Decision::Skip(Skip::Busy);
    }
    if now.attended {
        return Decision::Skip(Skip::Attended);
    }
    let mention = is_group(&message.conversation_id) && mentions(&message.text, now.my_name);
    if s.is_muted(&message.conversation_id) && !mention {
        return Decision::Skip(Skip::Muted);
    }
    Decision::Notify { mention }
}

/// `@name` anywhere in the text, case-insensitive, not followed by more of a word
/// (`@Li` does not mention "Li" inside `@Lisa`).
pub fn mentions(text: &str, name: &str) -> bool {
    let name = name.trim();
    if name.is_empty() {
        return false;
    }
    let text = text.to_lowercase();
    let needle = format!("@{}", name.to_lowercase());
    text.match_indices(&needle).any(|(at, _)| {
        text[at + needle.len()..]
            .chars()
            .next()
            .is_none_or(|c| !c.is_alphanumeric() && c != '_')
    })
}

/// What one conversation's notification says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    pub summary: String,
    pub body: String,
}

/// A DM shows the sender as the title; a group shows the group with the sender in the
/// body. `count` messages collapsed into this one notification.
pub fn content(
    message: &MessageView,
    conversation_name: &str,
    count: u32,
    previews: bool,
    lang: Language,
) -> Content {
    let preview = if previews {
        preview(&shown_text(message))
    } else {
        i18n::t(lang, "notify.hidden_preview")
    };
    let line = if is_group(&message.conversation_id) {
        format!("{}: {preview}", message.sender_name)
    } else {
        preview
    };
    let body = if count > 1 {
        format!(
            "{}\n{line}",
            i18n::tf(lang, "notify.collapsed", &[("count", &count.to_string())])
        )
    } else {
        line
    };
    let summary = if is_group(&message.conversation_id) && !conversation_name.is_empty() {
        conversation_name.to_string()
    } else {
        message.sender_name.clone()
    };
    Content {
        summary,
        body: escape_markup(&body),
    }
}

/// A file message has no text: its file names stand for it.
fn shown_text(message: &MessageView) -> String {
    if message.attachments.is_empty() {
        return message.text.clone();
    }
    let names: Vec<&str> = message
        .attachments
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    format!("📎 {}", names.join(", "))
}

fn preview(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > PREVIEW_CHARS {
        let cut: String = one_line.chars().take(PREVIEW_CHARS - 1).collect();
        format!("{cut}…")
    } else {
        one_line
    }
}

/// Servers that support body markup would read `<b>` in a message as formatting.
fn escape_markup(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use api_types::MessageStatus;

    fn message(conversation_id: &str, text: &str, outgoing: bool) -> MessageView {
        MessageView {
            id: "m1".into(),
            conversation_id: conversation_id.into(),
            sender: "lan:01ARZ3NDEKTSV4RRFFQ69G5FAV".into(),
            sender_name: "Zhang".into(),
            outgoing,
            text: text.into(),
            status: MessageStatus::Delivered,
            sent_at: 0,
            order: "1".into(),
            read_by: None,
            attachments: Vec::new(),
        }
    }

    fn situation(settings: &DesktopSettings) -> Situation<'_> {
        Situation {
            settings,
            presence: Presence::Online,
            attended: false,
            my_name: "Li Wei",
        }
    }

    #[test]
    fn who_gets_a_notification() {
        let mut s = DesktopSettings::default();
        let dm = message("dm:lan:X", "hi", false);
        let group = "group:01ARZ3NDEKTSV4RRFFQ69G5FAV";
        assert_eq!(
            decide(&dm, &situation(&s)),
            Decision::Notify { mention: false }
        );
        assert_eq!(
            decide(&message("dm:lan:X", "hi", true), &situation(&s)),
            Decision::Skip(Skip::Outgoing)
        );
        let attended = Situation {
            attended: true,
            ..situation(&s)
        };
        assert_eq!(decide(&dm, &attended), Decision::Skip(Skip::Attended));
        let busy = Situation {
            presence: Presence::Busy,
            ..situation(&s)
        };
        assert_eq!(decide(&dm, &busy), Decision::Skip(Skip::Busy));

        s.muted_conversations = vec!["dm:lan:X".into(), group.into()];
        assert_eq!(decide(&dm, &situation(&s)), Decision::Skip(Skip::Muted));
        assert_eq!(
            decide(&message(group, "lunch?", false), &situation(&s)),
            Decision::Skip(Skip::Muted)
        );
        assert_eq!(
            decide(&message(group, "@li wei lunch?", false), &situation(&s)),
            Decision::Notify { mention: true },
            "a mention gets through a muted group"
        );
        assert_eq!(
            decide(&message("dm:lan:X", "@Li Wei", false), &situation(&s)),
            Decision::Skip(Skip::Muted),
            "mentions are a group thing; a muted DM stays quiet"
        );
        s.do_not_disturb = true;
        assert_eq!(
            decide(&message(group, "@Li Wei", false), &situation(&s)),
            Decision::Skip(Skip::DoNotDisturb)
        );
        s.do_not_disturb = false;
        s.notifications = false;
        assert_eq!(decide(&dm, &situation(&s)), Decision::Skip(Skip::Disabled));
    }

    #[test]
    fn mentions_need_the_whole_name() {
        assert!(mentions("hey @Li Wei, lunch", "Li Wei"));
        assert!(mentions("@li wei", "Li Wei"));
        assert!(mentions("问一下 @李伟 吗", "李伟"));
        assert!(!mentions("hey @Li Weiss", "Li Wei"));
        assert!(!mentions("li wei", "Li Wei"));
        assert!(!mentions("@", ""));
    }

    #[test]
    fn content_of_a_dm_a_group_and_a_collapsed_run() {
        let dm = message("dm:lan:X", "see <b>you</b>\n  soon", false);
        let c = content(&dm, "Zhang", 1, true, Language::EnUs);
        assert_eq!(c.summary, "Zhang");
        assert_eq!(c.body, "see &lt;b&gt;you&lt;/b&gt; soon");
        let hidden = content(&dm, "Zhang", 1, false, Language::EnUs);
        assert!(!hidden.body.contains("see"), "{}", hidden.body);

        let g = message("group:01ARZ3NDEKTSV4RRFFQ69G5FAV", "lunch?", false);
        let c = content(&g, "Team", 3, true, Language::EnUs);
        assert_eq!(c.summary, "Team");
        assert!(c.body.ends_with("Zhang: lunch?"), "{}", c.body);
        assert!(c.body.contains('3'), "{}", c.body);

        let long = message("dm:lan:X", &"字".repeat(500), false);
        let c = content(&long, "Zhang", 1, true, Language::ZhCn);
        assert_eq!(c.body.chars().count(), PREVIEW_CHARS);

        let mut file = message("dm:lan:X", "", false);
        let content_doc = api_types::FileContent {
            files: vec![api_types::FileRef {
                file_id: "a".repeat(64),
                manifest: "b".repeat(64),
                size: 1,
                chunk_size: 131072,
                name: "报告.pdf".into(),
                path: None,
                mime: "application/pdf".into(),
                thumbnail: None,
            }],
        };
        file.attachments = crate::files::attachment_views(&content_doc);
        let c = content(&file, "Zhang", 1, true, Language::ZhCn);
        assert_eq!(c.body, "📎 报告.pdf");
    }
}
