//! `lanchat send --to NAME_OR_ID`: which conversation the user means. Ids win over
//! names; a name must be unique among contacts and groups, or the user is shown the
//! candidates with the ids to use instead.

use api_types::{ContactView, ConversationKind, ConversationView};

/// Where a message goes, and how to name it back to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub conversation_id: String,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error(
        "nobody and no group here is called or has the id {0:?}; `lanchat peers` lists the peers"
    )]
    NotFound(String),
    #[error("{name:?} is ambiguous; use one of these ids with --to:\n{}", list(.candidates))]
    Ambiguous {
        name: String,
        candidates: Vec<Candidate>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub description: String,
}

fn list(candidates: &[Candidate]) -> String {
    candidates
        .iter()
        .map(|c| format!("  {}  ({})", c.id, c.description))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn resolve(
    wanted: &str,
    contacts: &[ContactView],
    conversations: &[ConversationView],
) -> Result<Target, ResolveError> {
    let wanted = wanted.trim();
    // The node refuses messages to itself: this node is never a candidate.
    let contacts: Vec<&ContactView> = contacts.iter().filter(|c| !c.is_self).collect();
    // A conversation id, a peer id (or user id `lan:…`), or a bare group id.
    for c in conversations {
        if c.id == wanted || c.id == format!("group:{wanted}") {
            return Ok(Target {
                conversation_id: c.id.clone(),
                label: c.name.clone(),
            });
        }
    }
    for c in &contacts {
        if c.peer_id.eq_ignore_ascii_case(wanted)
            || c.user_id.eq_ignore_ascii_case(wanted)
            || c.conversation_id == wanted
        {
            return Ok(Target {
                conversation_id: c.conversation_id.clone(),
                label: c.display_name.clone(),
            });
        }
    }
    let same_name = |name: &str| name.trim().to_lowercase() == wanted.to_lowercase();
    let mut found: Vec<(Target, Candidate)> = contacts
        .iter()
        .filter(|c| same_name(&c.display_name))
        .map(|c| {
            let state = if c.online { "online" } else { "offline" };
            (
                Target {
                    conversation_id: c.conversation_id.clone(),
                    label: c.display_name.clone(),
                },
                Candidate {
                    id: c.peer_id.clone(),
                    description: format!(
                        "{}, {state}{}",
                        c.display_name,
                        c.address
                            .as_deref()
                            .map(|a| format!(", {a}"))
                            .unwrap_or_default()
                    ),
                },
            )
        })
        .collect();
    found.extend(
        conversations
            .iter()
            .filter(|c| c.kind == ConversationKind::Group && same_name(&c.name))
            .map(|c| {
                (
                    Target {
                        conversation_id: c.id.clone(),
                        label: c.name.clone(),
                    },
                    Candidate {
                        id: c.id.clone(),
                        description: format!("group {}", c.name),
                    },
                )
            }),
    );
    match found.len() {
        0 => Err(ResolveError::NotFound(wanted.to_string())),
        1 => Ok(found.remove(0).0),
        _ => Err(ResolveError::Ambiguous {
            name: wanted.to_string(),
            candidates: found.into_iter().map(|(_, c)| c).collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(id: &str, name: &str, online: bool) -> ContactView {
        ContactView {
            user_id: format!("lan:{id}"),
            peer_id: id.to_string(),
            display_name: name.to_string(),
            online,
            address: Some("10.0.0.2:19123".into()),
            last_seen_at: None,
            blocked: false,
            is_self: false,
            presence: api_types::Presence::Online,
            conversation_id: format!("dm:lan:{id}"),
        }
    }

    fn group(id: &str, name: &str) -> ConversationView {
        ConversationView {
            id: format!("group:{id}"),
            kind: ConversationKind::Group,
            name: name.to_string(),
            last_message: None,
            unread: 0,
            last_activity_at: 0,
            peer_id: None,
        }
    }

    #[test]
    fn ids_then_unique_names() {
        let contacts = [
            contact("01AAA", "Bob", true),
            contact("01BBB", "Carol", false),
        ];
        let groups = [group("G1", "Team")];
        let to = |w: &str| resolve(w, &contacts, &groups).map(|t| t.conversation_id);
        assert_eq!(to("01aaa"), Ok("dm:lan:01AAA".into()));
        assert_eq!(to("lan:01BBB"), Ok("dm:lan:01BBB".into()));
        assert_eq!(to("dm:lan:01BBB"), Ok("dm:lan:01BBB".into()));
        assert_eq!(to("G1"), Ok("group:G1".into()));
        assert_eq!(to("group:G1"), Ok("group:G1".into()));
        assert_eq!(to(" bob "), Ok("dm:lan:01AAA".into()));
        assert_eq!(to("team"), Ok("group:G1".into()));
        assert_eq!(to("dave"), Err(ResolveError::NotFound("dave".into())));
    }

    #[test]
    fn a_shared_name_lists_every_candidate() {
        let contacts = [
            contact("01AAA", "Bob", true),
            contact("01CCC", "bob", false),
        ];
        let groups = [group("G1", "BOB")];
        let err = resolve("Bob", &contacts, &groups).unwrap_err();
        let text = err.to_string();
        for id in ["01AAA", "01CCC", "group:G1"] {
            assert!(text.contains(id), "{text}");
        }
        assert!(
            text.contains("online") && text.contains("offline"),
            "{text}"
        );
        assert!(matches!(err, ResolveError::Ambiguous { candidates, .. } if candidates.len() == 3));
    }
}
