//! `GET /api/v1/diagnostics` and `GET /api/v1/diagnostics/export`: per-peer link
//! details (discovery's view, the transport's links, the outbox), drop counters by
//! cause, recent faults. Also fills the link fields of `GET /api/v1/peers`.
//!
//! Nothing here may carry a secret, the API token or message text: the report is built
//! from counters, addresses, ids and log lines (which never hold those), and its free
//! text is scrubbed of the secret and the token before it leaves.

use std::collections::HashMap;

use api_types::{
    Diagnostics, DropCount, LinkState, NodeDiagnostics, NodeId, PeerDiagnostics, PeerView,
};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use lan_mesh::transport::{LinkPhase, LinkReport};

use super::ApiState;

/// `GET /api/v1/diagnostics`.
pub async fn get(State(state): State<ApiState>) -> Json<Diagnostics> {
    Json(report(&state).await)
}

/// `GET /api/v1/diagnostics/export`: the same report as one pretty-printed file to
/// attach to a ticket.
pub async fn export(State(state): State<ApiState>) -> Response {
    let diagnostics = report(&state).await;
    let name = format!(
        "lanchat-diagnostics-{}-{}.json",
        diagnostics.node.node_id, diagnostics.generated_at
    );
    let body = serde_json::to_vec_pretty(&diagnostics).unwrap_or_default();
    (
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

/// The link fields of `GET /api/v1/peers`: the transport's view of each listed peer.
pub(super) fn add_link_fields(state: &ApiState, peers: &mut [PeerView]) {
    let links = link_reports(state);
    for peer in peers {
        let link = links.get(&peer.peer_id);
        peer.link = link_state(peer.blocked, peer.online, link.map(|l| l.phase));
        peer.rtt_ms = link
            .and_then(|l| l.rtt)
            .map(|rtt| u64::try_from(rtt.as_micros().div_ceil(1000)).unwrap_or(u64::MAX));
        if let Some(key) = link.and_then(|l| l.key_fingerprint.clone()) {
            peer.key_fingerprint = Some(key);
        }
        peer.copy_of = link
            .and_then(|l| l.copy_of.as_ref())
            .map(|id| id.to_string());
    }
}

fn link_reports(state: &ApiState) -> HashMap<String, LinkReport> {
    state
        .mesh()
        .transport()
        .map(|t| t.links())
        .unwrap_or_default()
        .into_iter()
        .map(|l| (l.peer.to_string(), l))
        .collect()
}

/// One word for where a peer's link stands: blocks first, then the transport, then
/// discovery's presence.
pub fn link_state(blocked: bool, online: bool, phase: Option<LinkPhase>) -> LinkState {
    if blocked {
        return LinkState::Blocked;
    }
    match phase {
        Some(LinkPhase::Up) => LinkState::Up,
        Some(LinkPhase::Dialling) => LinkState::Connecting,
        Some(LinkPhase::Backoff { .. }) if online => LinkState::Retrying,
        _ if online => LinkState::Idle,
        _ => LinkState::Offline,
    }
}

async fn report(state: &ApiState) -> Diagnostics {
    let settings = state.settings().current();
    let mesh = &settings.lan_mesh;
    // The status report already gathers the counters and the warnings.
    let Json(status) = super::status::get(State(state.clone())).await;
    let snapshot = state.mesh().snapshot();
    let links = link_reports(state);
    let blocked: Vec<String> = mesh.blocked_peers.iter().map(ToString::to_string).collect();

    let known = match &snapshot.discovery {
        Some(d) => d.peers().await.ok(),
        None => None,
    };
    let mut peers: Vec<PeerDiagnostics> = match known {
        Some(list) => list
            .iter()
            .map(|p| {
                let view = crate::mesh::peer_view(p);
                peer_entry(
                    view,
                    p.discovery_addr.map(|a| a.to_string()),
                    &blocked,
                    &links,
                )
            })
            .collect(),
        None => state
            .store()
            .peers()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|p| peer_entry(super::peers::stored_peer_view(p), None, &blocked, &links))
            .collect(),
    };
    // A peer the transport still remembers but discovery no longer lists (forgotten).
    for (id, link) in &links {
        if !peers.iter().any(|p| &p.peer_id == id) {
            let mut entry = peer_entry(
                PeerView {
                    peer_id: id.clone(),
                    display_name: String::new(),
                    address: None,
                    online: false,
                    last_seen_at: None,
                    blocked: false,
                    clock_offset_ms: None,
                    rtt_ms: None,
                    link: LinkState::Offline,
                    key_fingerprint: None,
                    presence: api_types::Presence::Offline,
                    copy_of: None,
                },
                None,
                &blocked,
                &links,
            );
            entry.link = link_state(entry.blocked, false, Some(link.phase));
            peers.push(entry);
        }
    }
    for peer in &mut peers {
        let Ok(id) = peer.peer_id.parse::<NodeId>() else {
            continue;
        };
        if let Ok(outbox) = state.store().outbox_for_peer(id).await {
            peer.outbox_depth = outbox.len() as u64;
            peer.outbox_last_error = outbox
                .iter()
                .filter(|e| e.last_error.is_some())
                .max_by_key(|e| e.next_retry_at)
                .and_then(|e| e.last_error.clone());
        }
    }
    peers.sort_by(|a, b| {
        b.online
            .cmp(&a.online)
            .then_with(|| a.display_name.cmp(&b.display_name))
            .then_with(|| a.peer_id.cmp(&b.peer_id))
    });

    let mut drops = Vec::new();
    let discovery = status.discovery.clone().unwrap_or_default();
    let transport = status.transport.clone().unwrap_or_default();
    for (cause, count) in discovery.drops() {
        drops.push(drop_count("discovery", cause, count));
    }
    for (cause, count) in transport.drops() {
        drops.push(drop_count("transport", cause, count));
    }
    let (faults, faults_total) = crate::fault_log::global().snapshot();

    let mut report = Diagnostics {
        generated_at: now(),
        node: NodeDiagnostics {
            node_id: status.node_id.clone(),
            display_name: status.display_name.clone(),
            version: status.version.clone(),
            platform: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            link_key: status.link_key.clone(),
            started_at: state.inner.started_at,
            mesh_enabled: mesh.enabled,
            mesh_state: status.mesh_state,
            mesh_error: status.mesh_error.clone(),
            secret_set: !mesh.shared_secret.is_empty(),
            listen_port: mesh.listen_port,
            discovery_port: mesh.discovery_port,
            listen_addr: snapshot
                .transport
                .as_ref()
                .and_then(|t| t.local_addr())
                .map(|a| a.to_string()),
            heartbeat_interval_sec: mesh.heartbeat_interval_sec,
            peer_ttl_sec: mesh.peer_ttl_sec,
            allowed_subnets: mesh.allowed_subnets.iter().map(|c| c.to_string()).collect(),
            blocked_subnets: mesh.blocked_subnets.iter().map(|c| c.to_string()).collect(),
            peer_addresses: mesh.peer_addresses.iter().map(|a| a.to_string()).collect(),
            blocked_peers: mesh.blocked_peers.len(),
            memory: Some(crate::memory::report()),
        },
        peers,
        drops,
        discovery: status.discovery,
        transport: status.transport,
        faults,
        faults_total,
        warnings: status.warnings,
        receipts: state.mesh().receipt_counters(),
        files: state.files().counters(),
    };
    scrub(
        &mut report,
        &[&mesh.shared_secret, &state.inner.parts.token],
    );
    report
}

fn peer_entry(
    view: PeerView,
    discovery_address: Option<String>,
    blocked: &[String],
    links: &HashMap<String, LinkReport>,
) -> PeerDiagnostics {
    let link = links.get(&view.peer_id);
    let is_blocked = view.blocked || blocked.contains(&view.peer_id);
    let phase = link.map(|l| l.phase);
    PeerDiagnostics {
        link: link_state(is_blocked, view.online, phase),
        online: view.online,
        blocked: is_blocked,
        address: view.address,
        discovery_address,
        link_address: link.and_then(|l| l.addr).map(|a| a.to_string()),
        link_up_since: link.and_then(|l| l.up_since_ms),
        last_seen_at: view.last_seen_at,
        rtt_ms: link
            .and_then(|l| l.rtt)
            .map(|rtt| (rtt.as_secs_f64() * 1_000_000.0).round() / 1000.0),
        clock_offset_ms: view.clock_offset_ms,
        key_fingerprint: link
            .and_then(|l| l.key_fingerprint.clone())
            .or(view.key_fingerprint),
        outbox_depth: 0,
        dial_attempts: match phase {
            Some(LinkPhase::Backoff { attempts }) => Some(attempts),
            _ => None,
        },
        last_error: link.and_then(|l| l.last_error.as_ref().map(|f| f.reason.clone())),
        last_error_at: link.and_then(|l| l.last_error.as_ref().map(|f| f.at_ms)),
        outbox_last_error: None,
        peer_id: view.peer_id,
        display_name: view.display_name,
    }
}

fn drop_count(plane: &str, cause: &str, count: u64) -> DropCount {
    DropCount {
        plane: plane.to_string(),
        cause: cause.to_string(),
        count,
    }
}

/// Belt and braces: no free text of the report may hold the secret or the token, even
/// if some log line one day quotes them.
fn scrub(report: &mut Diagnostics, secrets: &[&str]) {
    let clean = |text: &mut String| {
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            if text.contains(*secret) {
                *text = text.replace(*secret, "[redacted]");
            }
        }
    };
    for fault in &mut report.faults {
        clean(&mut fault.message);
    }
    for peer in &mut report.peers {
        for text in [&mut peer.last_error, &mut peer.outbox_last_error]
            .into_iter()
            .flatten()
        {
            clean(text);
        }
    }
    for warning in &mut report.warnings {
        clean(&mut warning.message);
    }
    if let Some(error) = &mut report.node.mesh_error {
        clean(error);
    }
}

fn now() -> u64 {
    u64::try_from(super::now_ms()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_win_then_the_link_then_presence() {
        let up = Some(LinkPhase::Up);
        assert_eq!(link_state(true, true, up), LinkState::Blocked);
        assert_eq!(link_state(false, false, up), LinkState::Up);
        assert_eq!(
            link_state(false, true, Some(LinkPhase::Dialling)),
            LinkState::Connecting
        );
        let backoff = Some(LinkPhase::Backoff { attempts: 2 });
        assert_eq!(link_state(false, true, backoff), LinkState::Retrying);
        assert_eq!(link_state(false, false, backoff), LinkState::Offline);
        assert_eq!(link_state(false, true, None), LinkState::Idle);
        assert_eq!(
            link_state(false, true, Some(LinkPhase::None)),
            LinkState::Idle
        );
        assert_eq!(link_state(false, false, None), LinkState::Offline);
    }
}
