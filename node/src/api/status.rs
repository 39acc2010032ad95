//! `GET /api/v1/status`.

use api_types::{
    DiscoveryCounters, PeerView, Status, Warning, WarningCode, CLOCK_OFFSET_WARNING_MS,
};
use axum::extract::State;
use axum::Json;
use lan_mesh::discovery::DiscoveryStats;

use super::ApiState;
use crate::mesh::peer_view;

pub async fn get(State(state): State<ApiState>) -> Json<Status> {
    let settings = state.settings().current();
    let mesh = &settings.lan_mesh;
    let display_name = super::identity::own_name(&settings);
    let snapshot = state.mesh().snapshot();
    let (discovery, peers) = match &snapshot.discovery {
        Some(d) => (
            d.stats().await.ok().map(counters),
            d.peers()
                .await
                .map(|p| p.iter().map(peer_view).collect())
                .unwrap_or_default(),
        ),
        None => (None, Vec::new()),
    };
    let mut warnings = secret_warnings(mesh);
    warnings.extend(clock_warnings(&peers));
    if let Some(transport) = &snapshot.transport {
        warnings.extend(twin_warnings(&mesh.node_id, &transport.twins(), &peers));
    }
    warnings.extend(local_file_warnings(
        state.inner.parts.store.write_fault(),
        state.settings().file_problem(),
    ));
    Json(Status {
        node_id: mesh.node_id.to_string(),
        display_name,
        suggested_name: crate::system_name::suggested(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        mesh_enabled: mesh.enabled,
        mesh_state: snapshot.state,
        mesh_error: snapshot.error,
        api_port: state.inner.parts.local_addr.port(),
        listen_port: mesh.listen_port,
        discovery_port: mesh.discovery_port,
        discovery,
        transport: snapshot.transport.as_ref().map(|t| t.counters()),
        link_key: state.mesh().link_key().to_string(),
        warnings,
        presence: state.mesh().presence().get(),
    })
}

/// `open_lan` while the mesh runs without a secret (the explicit open LAN mode), or
/// `weak_secret` while it runs on a secret shorter than the API accepts (one from the
/// settings file or a preseed). Both stay until the settings change.
pub fn secret_warnings(mesh: &api_types::LanMeshSettings) -> Vec<Warning> {
    let (code, message) = if !mesh.enabled {
        return Vec::new();
    } else if mesh.shared_secret.is_empty() {
        (
            WarningCode::OpenLan,
            "The LAN mesh runs as an open LAN, without a shared secret: anyone on the \
             network can join and see who is online.",
        )
    } else if mesh.secret_is_weak() {
        (
            WarningCode::WeakSecret,
            "The shared secret is shorter than 12 characters and may be guessed: set a \
             generated one in the settings (on every computer of the office).",
        )
    } else {
        return Vec::new();
    };
    vec![Warning {
        code,
        message: message.to_string(),
        peer_id: None,
        display_name: None,
        offset_ms: None,
        address: None,
        addresses: Vec::new(),
    }]
}

/// `disk_full` / `storage_error` while the database cannot be written, and
/// `settings_file` while a hand edit of the settings file cannot be applied.
pub fn local_file_warnings(
    write_fault: Option<storage::WriteFault>,
    settings_problem: Option<String>,
) -> Vec<Warning> {
    let plain = |code, message: String| Warning {
        code,
        message,
        peer_id: None,
        display_name: None,
        offset_ms: None,
        address: None,
        addresses: Vec::new(),
    };
    let mut out = Vec::new();
    if let Some(fault) = write_fault {
        let code = match fault.kind {
            storage::WriteFaultKind::DiskFull => WarningCode::DiskFull,
            storage::WriteFaultKind::Io => WarningCode::StorageError,
        };
        out.push(plain(
            code,
            format!(
                "The database cannot be written: {} ({}). Nothing new is stored; colleagues' \
                 messages wait on their computers and arrive once it can be written again.",
                storage::describe_write_fault(fault.kind),
                fault.message
            ),
        ));
    }
    if let Some(problem) = settings_problem {
        out.push(plain(WarningCode::SettingsFile, problem));
    }
    out
}

fn counters(s: DiscoveryStats) -> DiscoveryCounters {
    let r = s.received;
    DiscoveryCounters {
        accepted: r.accepted,
        rate_limited: r.rate_limited,
        oversized: r.oversized,
        malformed: r.malformed,
        unsupported_version: r.unsupported_version,
        own: r.own,
        blocked_peer: r.blocked_peer,
        blocked_subnet: r.blocked_subnet,
        not_allowed: r.not_allowed,
        missing_tag: r.missing_tag,
        bad_tag: r.bad_tag,
        unexpected_tag: r.unexpected_tag,
        stale: r.stale,
        replayed: r.replayed,
        sent: s.sent,
        send_errors: s.send_errors,
        send_waits: s.send_waits,
        send_queue_full: s.send_queue_full,
        receive_queue_full: s.receive_queue_full,
        answers_dropped: s.answers_dropped,
        peers_online: s.peers_online as u64,
        sightings: s.sightings as u64,
        sightings_evicted: s.sightings_evicted,
    }
}

/// When most online colleagues agree that *our* clock is off (the median of their
/// offsets is over the threshold), one warning about this computer; otherwise one per
/// colleague whose clock is off. So a single wrong PC is named as such, on its own
/// screen and on everyone else's.
pub fn clock_warnings(peers: &[PeerView]) -> Vec<Warning> {
    let online: Vec<&PeerView> = peers.iter().filter(|p| p.online && !p.blocked).collect();
    let mut offsets: Vec<i64> = online.iter().filter_map(|p| p.clock_offset_ms).collect();
    if offsets.is_empty() {
        return Vec::new();
    }
    offsets.sort_unstable();
    let median = offsets[offsets.len() / 2];
    // With one colleague there is no majority: name the difference, not the culprit.
    if offsets.len() >= 2 && median.unsigned_abs() > CLOCK_OFFSET_WARNING_MS.unsigned_abs() {
        let ours = -median;
        return vec![Warning {
            code: WarningCode::ClockOffset,
            message: format!(
                "This computer's clock is {} {} most colleagues' clocks; set the time (or turn on time sync).",
                human_duration(ours.unsigned_abs()),
                if ours > 0 { "ahead of" } else { "behind" },
            ),
            peer_id: None,
            display_name: None,
            offset_ms: Some(ours),
            address: None,
            addresses: Vec::new(),
        }];
    }
    online
        .into_iter()
        .filter(|p| p.clock_is_off())
        .map(|p| {
            let offset = p.clock_offset_ms.unwrap_or_default();
            Warning {
                code: WarningCode::PeerClockOffset,
                message: format!(
                    "{}'s clock is {} {} this computer's.",
                    if p.display_name.is_empty() {
                        &p.peer_id
                    } else {
                        &p.display_name
                    },
                    human_duration(offset.unsigned_abs()),
                    if offset > 0 { "ahead of" } else { "behind" },
                ),
                peer_id: Some(p.peer_id.clone()),
                display_name: Some(p.display_name.clone()),
                offset_ms: Some(offset),
                address: None,
                addresses: Vec::new(),
            }
        })
        .collect()
}

/// One `duplicate_identity` warning per other computer holding this node's id, and one
/// per colleague whose id two computers hold.
pub fn twin_warnings(
    own: &api_types::NodeId,
    twins: &[lan_mesh::transport::Twin],
    peers: &[PeerView],
) -> Vec<Warning> {
    let mut out = Vec::new();
    for twin in twins {
        let addresses: Vec<String> = twin.addresses.iter().map(|a| a.to_string()).collect();
        if &twin.node_id == own {
            for address in addresses {
                out.push(Warning {
                    code: WarningCode::DuplicateIdentity,
                    message: format!(
                        "The computer at {address} runs with this computer's identity (a copied \
                         data directory?). Colleagues refuse both until one of them takes a new \
                         identity."
                    ),
                    peer_id: Some(own.to_string()),
                    display_name: None,
                    offset_ms: None,
                    address: Some(address),
                    addresses: Vec::new(),
                });
            }
        } else {
            let name = peers
                .iter()
                .find(|p| p.peer_id == twin.node_id.as_str())
                .map(|p| p.display_name.clone())
                .filter(|n| !n.is_empty());
            out.push(Warning {
                code: WarningCode::DuplicateIdentity,
                message: format!(
                    "{} runs on two computers at once ({}); messages for it wait until one of \
                     them takes a new identity.",
                    name.as_deref().unwrap_or(twin.node_id.as_str()),
                    addresses.join(", ")
                ),
                peer_id: Some(twin.node_id.to_string()),
                display_name: name,
                offset_ms: None,
                address: addresses.first().cloned(),
                addresses,
            });
        }
    }
    out
}

fn human_duration(ms: u64) -> String {
    let minutes = ms / 60_000;
    match minutes {
        0..=119 => format!("{minutes} min"),
        120..=2879 => format!("{} h", minutes / 60),
        _ => format!("{} days", minutes / 1440),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: &str, offset: Option<i64>) -> PeerView {
        PeerView {
            peer_id: id.into(),
            display_name: format!("name {id}"),
            address: None,
            online: true,
            last_seen_at: None,
            blocked: false,
            clock_offset_ms: offset,
            rtt_ms: None,
            link: api_types::LinkState::Idle,
            key_fingerprint: None,
            presence: api_types::Presence::Online,
            copy_of: None,
        }
    }

    #[test]
    fn an_open_lan_or_a_weak_secret_warns_while_the_mesh_is_on() {
        let id: api_types::NodeId = "01ARZ3NDEKTSV4RRFFQ69G5FAV".parse().unwrap();
        let mut mesh = api_types::LanMeshSettings::defaults(id);
        assert!(secret_warnings(&mesh).is_empty(), "the mesh is off");
        mesh.enabled = true;
        mesh.open_lan = true;
        let w = secret_warnings(&mesh);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].code, WarningCode::OpenLan);
        mesh.open_lan = false;
        mesh.shared_secret = "hunter2".into();
        let w = secret_warnings(&mesh);
        assert_eq!(w[0].code, WarningCode::WeakSecret);
        assert!(!w[0].message.contains("hunter2"));
        mesh.shared_secret = "PK3RT-9WQ2M-HX7VD-C4N8F".into();
        assert!(secret_warnings(&mesh).is_empty());
    }

    #[test]
    fn one_wrong_colleague_is_named() {
        let w = clock_warnings(&[
            peer("a", Some(200)),
            peer("b", Some(-150)),
            peer("c", Some(3 * 3_600_000)),
        ]);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].code, WarningCode::PeerClockOffset);
        assert_eq!(w[0].peer_id.as_deref(), Some("c"));
        assert!(w[0].message.contains("3 h ahead of"), "{}", w[0].message);
    }

    #[test]
    fn our_own_wrong_clock_is_one_warning() {
        let w = clock_warnings(&[
            peer("a", Some(-300_000)),
            peer("b", Some(-301_000)),
            peer("c", Some(100)),
        ]);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].code, WarningCode::ClockOffset);
        assert_eq!(w[0].offset_ms, Some(300_000));
        assert!(w[0].message.contains("5 min ahead of"), "{}", w[0].message);
    }

    #[test]
    fn synced_clocks_and_offline_peers_warn_nobody() {
        let mut off = peer("x", Some(86_400_000 * 2));
        off.online = false;
        assert!(clock_warnings(&[peer("a", Some(20)), off, peer("b", None)]).is_empty());
        // With a single colleague there is no majority: the colleague is named.
        let w = clock_warnings(&[peer("a", Some(-2 * 86_400_000))]);
        assert_eq!(w[0].code, WarningCode::PeerClockOffset);
        assert!(w[0].message.contains("2 days behind"), "{}", w[0].message);
    }
}
