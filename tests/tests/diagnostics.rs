//! Diagnostics on loopback (issue 18): `GET /api/v1/diagnostics` shows an open link with
//! its round-trip time and the key fingerprint the peer's own status shows, the drops
//! by cause and the fault log fill when an outsider (a node whose secret changed)
//! keeps knocking, `GET /api/v1/peers` carries the same link fields, and the export is
//! one downloadable JSON file that holds none of: the shared secret, the API token, the
//! text of a sent message. (Link states after a block, a crash and a partition are in
//! `lan_diagnostics.rs`, on a real LAN of network namespaces.)
//!
//! Short timers: heartbeat 1 s, TTL 3 s (`loopback_mesh_settings`). The export is kept
//! in `target/test-artifacts/diagnostics/` for a person to read.

#![allow(clippy::unwrap_used)]

use anyhow::Context;
use std::time::Duration;

use api_types::{Diagnostics, LinkState, PeerView};
use lanchat_tests::chat::{dm, get, send_dm, status, wait_all_delivered};
use lanchat_tests::{artifacts_dir, wait_until, LoopbackMesh};
use serde_json::json;

/// Long and unusual, so finding it in the export cannot be a coincidence.
const SECRET: &str = "office-secret-7d1c9e4b";
const CANARY: &str = "quarterly numbers canary 5f2e81";
const LIMIT: Duration = Duration::from_secs(30);

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn diagnostics_show_links_drops_and_faults_and_the_export_keeps_secrets_out() {
    let mesh = LoopbackMesh::start(
        "diagnostics/loopback",
        &["alpha", "bravo", "mallory"],
        SECRET,
        &[],
    )
    .await
    .unwrap();
    let (a, b, m) = (&mesh.nodes[0], &mesh.nodes[1], &mesh.nodes[2]);
    let b_id = mesh.ids[1].clone();
    let result = async {
        lanchat_tests::chat::wait_contact_online(a, &b_id, true, LIMIT).await?;
        let sent = send_dm(a, &dm(&b_id), CANARY).await?;
        wait_all_delivered(a, &dm(&b_id), std::slice::from_ref(&sent.id), LIMIT).await?;
        let b_key = status(b).await?.link_key;

        // The link to bravo: up, timed by a keepalive ping, keyed as bravo says.
        let bravo = wait_until(LIMIT, "bravo's link up with an RTT", || async {
            let d: Diagnostics = get(a, "v1/diagnostics").await.ok()?;
            d.peers
                .into_iter()
                .find(|p| p.peer_id == b_id && p.link == LinkState::Up && p.rtt_ms.is_some())
        })
        .await?;
        anyhow::ensure!(bravo.online && !bravo.blocked, "{bravo:?}");
        anyhow::ensure!(bravo.key_fingerprint.as_deref() == Some(b_key.as_str()));
        anyhow::ensure!(bravo.outbox_depth == 0, "{bravo:?}");
        anyhow::ensure!(bravo.rtt_ms.is_some_and(|ms| ms > 0.0));
        anyhow::ensure!(bravo.link_address.is_some() && bravo.link_up_since.is_some());
        let peers: Vec<PeerView> = get(a, "v1/peers").await?;
        let listed = peers.iter().find(|p| p.peer_id == b_id).unwrap();
        anyhow::ensure!(listed.link == LinkState::Up, "{listed:?}");
        anyhow::ensure!(listed.rtt_ms.is_some_and(|ms| ms >= 1), "{listed:?}");
        anyhow::ensure!(listed.key_fingerprint.as_deref() == Some(b_key.as_str()));

        // Mallory's secret changes: alpha drops its discovery packets (bad tag), says
        // so once in the log, and both show in diagnostics.
        let (code, body) = m
            .put_json(
                "v1/settings",
                &json!({"lan_mesh": {"shared_secret": "not-the-office-secret"}}),
            )
            .await?;
        anyhow::ensure!(code.is_success(), "{body}");
        let report = wait_until(LIMIT, "bad tags counted and logged", || async {
            let d: Diagnostics = get(a, "v1/diagnostics").await.ok()?;
            let bad_tags = d
                .drops
                .iter()
                .find(|c| c.plane == "discovery" && c.cause == "bad_tag")?
                .count;
            let logged = d
                .faults
                .iter()
                .any(|f| f.level == "warn" && f.message.contains("dropping discovery packets"));
            (bad_tags > 0 && logged).then_some(d)
        })
        .await?;
        anyhow::ensure!(report.faults_total >= report.faults.len() as u64);
        anyhow::ensure!(report.node.secret_set && report.node.node_id == mesh.ids[0]);
        // Its memory: the resident size, and its allocator's live heap inside it.
        let memory = report.node.memory.context("no memory in the report")?;
        let heap = memory
            .heap_allocated_bytes
            .context("the node's allocator gives no heap figures")?;
        anyhow::ensure!(
            heap > 0
                && heap < memory.resident_bytes
                && memory.heap_resident_bytes.is_some_and(|r| r >= heap),
            "{memory:?}"
        );

        // The export: one file, named for download, with the peers in it and nothing
        // secret or private.
        let response = a.get("v1/diagnostics/export").await?;
        anyhow::ensure!(response.status() == 200);
        let disposition = response
            .headers()
            .get("content-disposition")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        anyhow::ensure!(
            disposition.starts_with("attachment; filename=\"lanchat-diagnostics-")
                && disposition.ends_with(".json\""),
            "{disposition}"
        );
        let file = response.bytes().await?;
        std::fs::write(artifacts_dir("diagnostics")?.join("export.json"), &file)?;
        let exported: Diagnostics = serde_json::from_slice(&file)?;
        anyhow::ensure!(exported.peers.iter().any(|p| p.peer_id == b_id));
        anyhow::ensure!(contains(&file, &b_id) && contains(&file, "bad_tag"));
        for (what, needle) in [("secret", SECRET), ("token", &a.token), ("message", CANARY)] {
            anyhow::ensure!(!contains(&file, needle), "the export holds the {what}");
        }
        for word in CANARY.split_whitespace() {
            anyhow::ensure!(!contains(&file, word), "the export holds {word:?}");
        }
        Ok(())
    }
    .await;
    mesh.explain(result).unwrap();
}

/// The Diagnostics tab in a real Chromium: the colleague's link shown connected with
/// its key, in both languages, and the export button fetching the file.
#[tokio::test]
async fn the_diagnostics_tab_shows_the_link_and_exports() {
    let shots = artifacts_dir("diagnostics").unwrap();
    let mesh = LoopbackMesh::start("diagnostics/browser", &["alpha", "bravo"], SECRET, &[])
        .await
        .unwrap();
    let (a, b) = (&mesh.nodes[0], &mesh.nodes[1]);
    let b_id = mesh.ids[1].clone();
    let result = async {
        lanchat_tests::chat::wait_contact_online(a, &b_id, true, LIMIT).await?;
        let sent = send_dm(a, &dm(&b_id), "hello").await?;
        wait_all_delivered(a, &dm(&b_id), std::slice::from_ref(&sent.id), LIMIT).await?;
        let b_key = status(b).await?.link_key;

        let browser = lanchat_tests::webdriver::Browser::start().await?;
        browser.set_window_size(1280, 900).await?;
        browser
            .goto(&format!("{}#token={}", a.url, a.token))
            .await?;
        // The wasm app renders after it loads: wait for it before clicking.
        browser
            .wait_for_text("[data-testid=tab-diagnostics]", LIMIT, |t| !t.is_empty())
            .await?;
        browser.click("[data-testid=lang-en-US]").await?;
        browser.click("[data-testid=tab-diagnostics]").await?;
        let link = format!("[data-testid=diag-link-{b_id}]");
        // The tab refetches on peer events; the refresh button makes sure of the RTT.
        browser
            .wait_for_text(&link, LIMIT, |t| t == "Connected")
            .await?;
        browser.click("[data-testid=diag-refresh]").await?;
        let row = browser
            .wait_for_text(&format!("[data-testid=diag-peer-{b_id}]"), LIMIT, |t| {
                t.contains(" ms") && t.contains(&b_key)
            })
            .await?;
        anyhow::ensure!(row.contains("bravo"), "{row}");
        let memory = browser
            .wait_for_text("[data-testid=diag-memory]", LIMIT, |t| !t.is_empty())
            .await?;
        anyhow::ensure!(
            memory.contains("MB resident, ") && memory.ends_with(" in use"),
            "{memory}"
        );
        browser
            .screenshot(&shots.join("diagnostics-en-US.png"))
            .await?;

        browser.click("[data-testid=diag-export]").await?;
        let saved = browser
            .wait_for_text("[data-testid=diag-exported]", LIMIT, |t| !t.is_empty())
            .await?;
        anyhow::ensure!(
            saved.starts_with("Saved as lanchat-diagnostics-") && saved.ends_with(".json"),
            "{saved}"
        );

        browser.click("[data-testid=lang-zh-CN]").await?;
        browser
            .wait_for_text(&link, LIMIT, |t| t == "已连接")
            .await?;
        browser
            .screenshot(&shots.join("diagnostics-zh-CN.png"))
            .await?;
        browser.quit().await
    }
    .await;
    mesh.explain(result).unwrap();
}
