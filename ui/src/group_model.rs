//! The groups' view model: plain functions over the API types (who can be picked as a
//! member, member order, what the info panel offers, live updates of the group and
//! invitation lists), so the rules are tested natively and components only render.

use std::collections::BTreeSet;

use api_types::{
    ContactView, ConversationKind, ConversationView, GroupInvitationView, GroupMemberView,
    GroupView,
};

use crate::chat_model::filter_contacts;

/// Contacts that can be added to a group: not this node (it is always a member), not
/// blocked (the node refuses them, `field: "members"`), not already in `exclude`, and
/// matching every word of `query`. The API's order (online first, then by name) stays.
pub fn member_candidates(
    contacts: &[ContactView],
    exclude: &BTreeSet<String>,
    query: &str,
) -> Vec<ContactView> {
    filter_contacts(contacts, query)
        .into_iter()
        .filter(|c| !c.is_self && !c.blocked && !exclude.contains(&c.peer_id))
        .collect()
}

/// Adds `peer_id` to the picked set, or removes it when it is there (a checkbox).
pub fn toggle_pick(picked: &mut BTreeSet<String>, peer_id: &str) {
    if !picked.remove(peer_id) {
        picked.insert(peer_id.to_string());
    }
}

/// Members as the info panel lists them: online first, then the owner, then by name
/// (any case), then by node id so equal names never swap places.
pub fn sorted_members(members: &[GroupMemberView]) -> Vec<GroupMemberView> {
    let mut list = members.to_vec();
    list.sort_by(|a, b| {
        b.online
            .cmp(&a.online)
            .then_with(|| b.is_owner.cmp(&a.is_owner))
            .then_with(|| {
                a.display_name
                    .to_lowercase()
                    .cmp(&b.display_name.to_lowercase())
            })
            .then_with(|| a.peer_id.cmp(&b.peer_id))
    });
    list
}

/// How many members are online (this node counts while it is one).
pub fn online_count(members: &[GroupMemberView]) -> usize {
    members.iter().filter(|m| m.online).count()
}

/// What the info panel offers, straight from the node's `permissions`: it shows only
/// what the members will accept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PanelActions {
    pub rename: bool,
    pub edit_announcement: bool,
    pub add_members: bool,
    pub remove_members: bool,
    pub leave: bool,
    pub dissolve: bool,
}

pub fn panel_actions(group: &GroupView) -> PanelActions {
    let p = group.permissions;
    PanelActions {
        rename: p.edit_info,
        edit_announcement: p.edit_info,
        add_members: p.manage_members,
        remove_members: p.manage_members,
        leave: p.leave,
        dissolve: p.dissolve,
    }
}

/// A member can be removed by whoever manages members, except the owner (who always
/// stays) and this node itself (which leaves instead).
pub fn can_remove(group: &GroupView, member: &GroupMemberView) -> bool {
    group.permissions.manage_members && !member.is_owner && !member.is_self
}

/// Where this node stands in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Member,
    /// Left, or removed by the owner: the history stays, nothing more arrives.
    NotMember,
    /// The owner ended it for everyone.
    Dissolved,
}

pub fn standing(group: &GroupView) -> Standing {
    if group.dissolved {
        Standing::Dissolved
    } else if !group.is_member {
        Standing::NotMember
    } else {
        Standing::Member
    }
}

/// The catalog key of the note shown in place of sending, or `None` when this node may
/// send. An unknown group (not fetched yet) may send: the node has the last word.
pub fn composer_note(group: Option<&GroupView>) -> Option<&'static str> {
    let group = group?;
    match standing(group) {
        Standing::Dissolved => Some("group.note.dissolved"),
        Standing::NotMember => Some("group.note.not_member"),
        Standing::Member if !group.permissions.send => Some("group.note.no_send"),
        Standing::Member => None,
    }
}

/// The whole member list after adding `picked` (the `members` of a `PUT`).
pub fn members_with(group: &GroupView, picked: &BTreeSet<String>) -> Vec<String> {
    let mut ids: Vec<String> = group.members.iter().map(|m| m.peer_id.clone()).collect();
    for id in picked {
        if !ids.contains(id) {
            ids.push(id.clone());
        }
    }
    ids
}

/// The whole member list without `peer_id`.
pub fn members_without(group: &GroupView, peer_id: &str) -> Vec<String> {
    group
        .members
        .iter()
        .filter(|m| m.peer_id != peer_id)
        .map(|m| m.peer_id.clone())
        .collect()
}

/// Node ids already in the group (excluded from the add picker).
pub fn member_ids(group: &GroupView) -> BTreeSet<String> {
    group.members.iter().map(|m| m.peer_id.clone()).collect()
}

/// Puts a group from an answer or a `group.updated` event into the list (by name, as
/// the API lists them). A copy older than the one held (an answer that was overtaken
/// by an event) is dropped; the same revision replaces, as presence may have changed.
pub fn upsert_group(list: &mut Vec<GroupView>, group: GroupView) {
    match list.iter_mut().find(|g| g.id == group.id) {
        Some(held) if held.revision > group.revision => {}
        Some(held) => *held = group,
        None => list.push(group),
    }
    list.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
}

/// A whole list from `GET /api/v1/groups`, keeping any copy an event made newer meanwhile.
pub fn replace_groups(list: &mut Vec<GroupView>, fetched: Vec<GroupView>) {
    let held = std::mem::take(list);
    for group in fetched {
        upsert_group(list, group);
    }
    for group in held {
        if list.iter().any(|g| g.id == group.id) {
            upsert_group(list, group);
        }
    }
}

/// `group.announcement`: the new text, at once (the `group.updated` that follows
/// carries it too).
pub fn set_announcement(list: &mut [GroupView], group_id: &str, text: &str) -> bool {
    match list.iter_mut().find(|g| g.id == group_id) {
        Some(g) => {
            g.announcement = text.to_string();
            true
        }
        None => false,
    }
}

pub fn group_by_conversation<'a>(
    list: &'a [GroupView],
    conversation_id: &str,
) -> Option<&'a GroupView> {
    list.iter().find(|g| g.conversation_id == conversation_id)
}

/// The conversation list entry of a group the list does not hold yet (just created
/// or just heard of), so it shows without waiting for a refetch.
pub fn conversation_of(group: &GroupView) -> ConversationView {
    ConversationView {
        id: group.conversation_id.clone(),
        kind: ConversationKind::Group,
        name: group.name.clone(),
        last_message: None,
        unread: 0,
        last_activity_at: group.updated_at,
        peer_id: None,
    }
}

/// Applies a group's (new) name to its conversation entry; `false` when the list does
/// not hold it.
pub fn rename_conversation(list: &mut [ConversationView], group: &GroupView) -> bool {
    match list.iter_mut().find(|c| c.id == group.conversation_id) {
        Some(c) => {
            c.name = group.name.clone();
            true
        }
        None => false,
    }
}

/// An invitation from the list or a `group.invitation` event: one per group (a newer
/// one replaces), newest first.
pub fn upsert_invitation(list: &mut Vec<GroupInvitationView>, invitation: GroupInvitationView) {
    list.retain(|i| i.group.id != invitation.group.id);
    list.push(invitation);
    list.sort_by(|a, b| {
        b.received_at
            .cmp(&a.received_at)
            .then_with(|| a.group.id.cmp(&b.group.id))
    });
}

/// `group.invitation_closed`, or an answer to accept/decline.
pub fn close_invitation(list: &mut Vec<GroupInvitationView>, group_id: &str) {
    list.retain(|i| i.group.id != group_id);
}

/// The form field an API error names, so the dialog and the panel show it there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormField {
    Name,
    Announcement,
    Members,
    /// Anything else (the group itself, a network failure): shown for the whole form.
    Other,
}

pub fn form_field(field: Option<&str>) -> FormField {
    match field {
        Some("name") => FormField::Name,
        Some("announcement") => FormField::Announcement,
        Some("members") => FormField::Members,
        _ => FormField::Other,
    }
}

/// A peer's name for a warning: the contact's, else its node id.
pub fn peer_name(contacts: &[ContactView], peer_id: &str) -> String {
    contacts
        .iter()
        .find(|c| c.peer_id == peer_id)
        .map(|c| c.display_name.clone())
        .unwrap_or_else(|| peer_id.to_string())
}

/// The history is scrolled away from its newest end by more than `margin` pixels. It is
/// laid out bottom-up, so `scrollTop` is 0 at the newest message and grows negative
/// upwards in Chromium (positive in some engines): its size is the distance either way.
pub fn away_from_newest(scroll_top: i32, margin: i32) -> bool {
    scroll_top.unsigned_abs() > margin.unsigned_abs()
}

/// The "jump to newest" button shows while the user reads further up and messages
/// arrived below since.
pub fn show_jump(away: bool, unseen: u32) -> bool {
    away && unseen > 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use api_types::GroupPermissions;

    fn contact(name: &str, peer_id: &str, online: bool) -> ContactView {
        ContactView {
            user_id: format!("lan:{peer_id}"),
            peer_id: peer_id.into(),
            display_name: name.into(),
            online,
            address: None,
            last_seen_at: None,
            blocked: false,
            is_self: false,
            presence: api_types::Presence::Online,
            conversation_id: format!("dm:lan:{peer_id}"),
        }
    }

    fn member(name: &str, peer_id: &str, online: bool, owner: bool) -> GroupMemberView {
        GroupMemberView {
            peer_id: peer_id.into(),
            user_id: format!("lan:{peer_id}"),
            display_name: name.into(),
            online,
            is_self: false,
            presence: api_types::Presence::Online,
            is_owner: owner,
        }
    }

    fn group(id: &str, name: &str, revision: u64) -> GroupView {
        GroupView {
            id: id.into(),
            conversation_id: format!("group:{id}"),
            name: name.into(),
            announcement: String::new(),
            owner: "A".into(),
            members: vec![
                member("alpha", "A", true, true),
                member("bravo", "B", false, false),
            ],
            is_member: true,
            dissolved: false,
            permissions: GroupPermissions {
                send: true,
                edit_info: true,
                manage_members: true,
                leave: false,
                dissolve: true,
            },
            revision,
            revision_editor: "A".into(),
            updated_at: 1000,
        }
    }

    fn invitation(id: &str, at: u64) -> GroupInvitationView {
        GroupInvitationView {
            group: group(id, id, 1),
            from_peer_id: "A".into(),
            from_name: "alpha".into(),
            received_at: at,
        }
    }

    #[test]
    fn candidates_leave_out_self_blocked_and_members_and_follow_the_filter() {
        let mut me = contact("me", "S", true);
        me.is_self = true;
        let mut blocked = contact("blocked", "X", true);
        blocked.blocked = true;
        let list = vec![
            me,
            contact("Bravo", "B", true),
            contact("Charlie", "C", false),
            blocked,
        ];
        let none = BTreeSet::new();
        let ids = |v: Vec<ContactView>| v.into_iter().map(|c| c.peer_id).collect::<Vec<_>>();
        assert_eq!(ids(member_candidates(&list, &none, "")), ["B", "C"]);
        assert_eq!(ids(member_candidates(&list, &none, "char")), ["C"]);
        let members = BTreeSet::from(["B".to_string()]);
        assert_eq!(ids(member_candidates(&list, &members, "")), ["C"]);
        assert!(member_candidates(&list, &none, "nobody").is_empty());
    }

    #[test]
    fn a_pick_toggles() {
        let mut picked = BTreeSet::new();
        toggle_pick(&mut picked, "B");
        toggle_pick(&mut picked, "C");
        toggle_pick(&mut picked, "B");
        assert_eq!(picked, BTreeSet::from(["C".to_string()]));
    }

    #[test]
    fn members_are_listed_online_first_then_owner_then_by_name() {
        let list = vec![
            member("zed", "Z", true, false),
            member("Anna", "N", false, false),
            member("owner", "O", true, true),
            member("bob", "B2", true, false),
            member("bob", "B1", true, false),
        ];
        let order: Vec<_> = sorted_members(&list)
            .into_iter()
            .map(|m| m.peer_id)
            .collect();
        assert_eq!(order, ["O", "B1", "B2", "Z", "N"]);
        assert_eq!(online_count(&list), 4);
    }

    #[test]
    fn the_panel_offers_what_permissions_allow() {
        let owner = group("G", "g", 1);
        let a = panel_actions(&owner);
        assert!(a.rename && a.edit_announcement && a.add_members && a.remove_members);
        assert!(a.dissolve && !a.leave);

        let mut plain = group("G", "g", 1);
        plain.permissions = GroupPermissions {
            send: true,
            edit_info: true,
            manage_members: false,
            leave: true,
            dissolve: false,
        };
        let a = panel_actions(&plain);
        assert!(a.rename && a.leave && !a.add_members && !a.remove_members && !a.dissolve);

        let mut ended = group("G", "g", 1);
        ended.dissolved = true;
        ended.permissions = GroupPermissions::default();
        assert_eq!(panel_actions(&ended), PanelActions::default());
    }

    #[test]
    fn only_other_non_owner_members_can_be_removed() {
        let g = group("G", "g", 1);
        let mut me = member("me", "M", true, false);
        me.is_self = true;
        assert!(can_remove(&g, &member("bravo", "B", true, false)));
        assert!(!can_remove(&g, &member("alpha", "A", true, true)));
        assert!(!can_remove(&g, &me));
        let mut plain = g.clone();
        plain.permissions.manage_members = false;
        assert!(!can_remove(&plain, &member("bravo", "B", true, false)));
    }

    #[test]
    fn the_composer_is_closed_when_left_or_dissolved() {
        let mut g = group("G", "g", 1);
        assert_eq!(composer_note(Some(&g)), None);
        assert_eq!(
            composer_note(None),
            None,
            "an unknown group is the node's call"
        );
        g.is_member = false;
        g.permissions = GroupPermissions::default();
        assert_eq!(standing(&g), Standing::NotMember);
        assert_eq!(composer_note(Some(&g)), Some("group.note.not_member"));
        g.dissolved = true;
        assert_eq!(standing(&g), Standing::Dissolved, "dissolved says more");
        assert_eq!(composer_note(Some(&g)), Some("group.note.dissolved"));
        let mut muted = group("G", "g", 1);
        muted.permissions.send = false;
        assert_eq!(composer_note(Some(&muted)), Some("group.note.no_send"));
    }

    #[test]
    fn member_lists_for_a_change_keep_everyone_else() {
        let g = group("G", "g", 1);
        let picked = BTreeSet::from(["C".to_string(), "B".to_string()]);
        assert_eq!(members_with(&g, &picked), ["A", "B", "C"]);
        assert_eq!(members_without(&g, "B"), ["A"]);
        assert_eq!(members_without(&g, "nobody"), ["A", "B"]);
        assert_eq!(member_ids(&g).len(), 2);
    }

    #[test]
    fn upserts_keep_one_copy_by_name_and_never_go_back_a_revision() {
        let mut list = vec![];
        upsert_group(&mut list, group("2", "beta", 5));
        upsert_group(&mut list, group("1", "alpha", 1));
        assert_eq!(
            list.iter().map(|g| &g.name).collect::<Vec<_>>(),
            ["alpha", "beta"]
        );
        upsert_group(&mut list, group("2", "old name", 4));
        assert_eq!(list[1].name, "beta", "an older copy is dropped");
        upsert_group(&mut list, group("2", "aardvark", 6));
        assert_eq!(list[0].name, "aardvark", "a newer one replaces, and sorts");
        assert_eq!(list.len(), 2);

        // A refetch answered before an event: the event's newer copy stays.
        replace_groups(
            &mut list,
            vec![group("1", "alpha", 1), group("2", "beta", 5)],
        );
        assert_eq!(
            list.iter().map(|g| &g.name).collect::<Vec<_>>(),
            ["aardvark", "alpha"]
        );
        // A group the node no longer lists goes.
        replace_groups(&mut list, vec![group("1", "alpha", 1)]);
        assert_eq!(list.len(), 1);
    }

    #[test]
    fn announcements_and_names_apply_in_place() {
        let mut list = vec![group("1", "alpha", 1)];
        assert!(set_announcement(&mut list, "1", "Meeting at 3"));
        assert_eq!(list[0].announcement, "Meeting at 3");
        assert!(!set_announcement(&mut list, "2", "x"));
        assert_eq!(
            group_by_conversation(&list, "group:1").map(|g| g.id.as_str()),
            Some("1")
        );

        let g = group("1", "renamed", 2);
        let mut convs = vec![conversation_of(&group("1", "alpha", 1))];
        assert_eq!(convs[0].kind, ConversationKind::Group);
        assert!(rename_conversation(&mut convs, &g));
        assert_eq!(convs[0].name, "renamed");
        assert!(!rename_conversation(&mut convs, &group("9", "x", 1)));
    }

    #[test]
    fn invitations_are_one_per_group_newest_first() {
        let mut list = vec![];
        upsert_invitation(&mut list, invitation("1", 10));
        upsert_invitation(&mut list, invitation("2", 20));
        upsert_invitation(&mut list, invitation("1", 30));
        let ids: Vec<_> = list.iter().map(|i| i.group.id.as_str()).collect();
        assert_eq!(ids, ["1", "2"]);
        close_invitation(&mut list, "1");
        close_invitation(&mut list, "unknown");
        assert_eq!(list.len(), 1);
    }

    #[test]
    fn api_fields_map_to_form_fields() {
        assert_eq!(form_field(Some("name")), FormField::Name);
        assert_eq!(form_field(Some("announcement")), FormField::Announcement);
        assert_eq!(form_field(Some("members")), FormField::Members);
        assert_eq!(form_field(Some("group")), FormField::Other);
        assert_eq!(form_field(None), FormField::Other);
    }

    #[test]
    fn warnings_name_the_peer_when_known() {
        let list = vec![contact("bravo", "B", true)];
        assert_eq!(peer_name(&list, "B"), "bravo");
        assert_eq!(peer_name(&list, "01UNKNOWN"), "01UNKNOWN");
    }

    #[test]
    fn the_jump_button_needs_distance_and_new_messages() {
        assert!(away_from_newest(-500, 160));
        assert!(away_from_newest(500, 160), "engines that count upwards");
        assert!(!away_from_newest(-40, 160));
        assert!(show_jump(true, 2));
        assert!(!show_jump(true, 0));
        assert!(!show_jump(false, 3));
    }
}
