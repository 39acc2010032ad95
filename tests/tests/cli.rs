//! `lanchat status|peers|send` against real running nodes on loopback (issue 18): the
//! command finds the node of `--data-dir` through its `api.json`, prints text or
//! `--json`, sends by display name, peer id or conversation id (and files with
//! `--file`, streamed), refuses an ambiguous
//! name listing the candidates, and says clearly — with exit status 3 — when no node
//! runs (no `api.json`, or one left by a killed node).
//!
//! Short timers: heartbeat 1 s, TTL 3 s (`loopback_mesh_settings`). Data directories and
//! logs stay in `target/test-artifacts/cli/`.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use api_types::{MessageStatus, PeerView, Status};
use lanchat_tests::chat::{dm, history, wait_contact_online, wait_history};
use lanchat_tests::{lanchat_bin, wait_until, LoopbackMesh};
use serde_json::json;

const SECRET: &str = "office";
const ONLINE: Duration = Duration::from_secs(20);
const DELIVERY: Duration = Duration::from_secs(30);

async fn lanchat(data_dir: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(lanchat_bin().unwrap())
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .await
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn no_node_is_a_clear_error_with_its_own_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    for command in [
        vec!["status"],
        vec!["peers"],
        vec!["send", "--to", "x", "hi"],
    ] {
        let out = lanchat(dir.path(), &command).await;
        assert_eq!(out.status.code(), Some(3), "{command:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("no lanchat node is running") && err.contains("api.json does not exist"),
            "{err}"
        );
        assert!(stdout(&out).is_empty());
    }
}

#[tokio::test]
async fn a_killed_node_leaves_an_api_file_the_command_sees_through() {
    let mut mesh = LoopbackMesh::start("cli/killed", &["solo", "other"], SECRET, &[])
        .await
        .unwrap();
    let dir = mesh.nodes[0].data_dir.clone();
    let out = lanchat(&dir, &["status"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    mesh.nodes[0].kill().unwrap();
    assert!(
        dir.join("api.json").exists(),
        "SIGKILL leaves api.json behind"
    );
    let out = lanchat(&dir, &["status"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("no longer runs"), "{}", stderr(&out));
}

#[tokio::test]
async fn status_peers_and_send_talk_to_the_running_node() {
    let mesh = LoopbackMesh::start("cli/chat", &["alpha", "bravo", "carol"], SECRET, &[])
        .await
        .unwrap();
    let (a, b, c) = (&mesh.nodes[0], &mesh.nodes[1], &mesh.nodes[2]);
    let (b_id, c_id) = (mesh.ids[1].as_str(), mesh.ids[2].as_str());
    let result = async {
        wait_contact_online(a, b_id, true, ONLINE).await?;
        wait_contact_online(a, c_id, true, ONLINE).await?;

        // status: text for people, JSON for scripts, both about this data dir's node.
        let out = lanchat(&a.data_dir, &["status"]).await;
        anyhow::ensure!(out.status.success(), "status: {}", stderr(&out));
        let text = stdout(&out);
        anyhow::ensure!(
            text.contains("alpha") && text.contains(&mesh.ids[0]) && text.contains("running"),
            "{text}"
        );
        let out = lanchat(&a.data_dir, &["--json", "status"]).await;
        let status: Status = serde_json::from_slice(&out.stdout)?;
        anyhow::ensure!(status.node_id == mesh.ids[0]);

        // peers: both colleagues, online.
        let out = lanchat(&a.data_dir, &["peers", "--json"]).await;
        let peers: Vec<PeerView> = serde_json::from_slice(&out.stdout)?;
        for id in [b_id, c_id] {
            anyhow::ensure!(
                peers.iter().any(|p| p.peer_id == *id && p.online),
                "{id} missing from {peers:?}"
            );
        }
        let out = lanchat(&a.data_dir, &["peers"]).await;
        let table = stdout(&out);
        anyhow::ensure!(
            table.starts_with("NAME") && table.contains("bravo") && table.contains(c_id),
            "{table}"
        );

        // send by display name, by peer id, by conversation id.
        let out = lanchat(
            &a.data_dir,
            &["send", "--to", "Bravo", "hello", "by", "name"],
        )
        .await;
        anyhow::ensure!(out.status.success(), "send by name: {}", stderr(&out));
        anyhow::ensure!(stdout(&out).contains(&dm(b_id)), "{}", stdout(&out));
        let out = lanchat(&a.data_dir, &["send", "--to", c_id, "hello by id"]).await;
        anyhow::ensure!(out.status.success(), "send by id: {}", stderr(&out));
        let out = lanchat(
            &a.data_dir,
            &["--json", "send", "--to", &dm(b_id), "hello by conversation"],
        )
        .await;
        anyhow::ensure!(
            out.status.success(),
            "send by conversation: {}",
            stderr(&out)
        );
        let sent: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        anyhow::ensure!(sent["text"] == "hello by conversation", "{sent}");

        let want = ["hello by name", "hello by conversation"];
        wait_history(b, &dm(&mesh.ids[0]), DELIVERY, "bravo got both", |m| {
            m.iter().map(|m| m.text.as_str()).eq(want)
        })
        .await?;
        wait_history(c, &dm(&mesh.ids[0]), DELIVERY, "carol got hers", |m| {
            m.iter().map(|m| m.text.as_str()).eq(["hello by id"])
        })
        .await?;
        wait_until(DELIVERY, "alpha's messages delivered", || async {
            let h = history(a, &dm(b_id)).await.ok()?;
            h.iter()
                .all(|m| m.status == MessageStatus::Delivered)
                .then_some(())
        })
        .await?;

        // send --file: a text, then two files streamed to the node; bravo gets them.
        let files = tempfile::tempdir()?;
        let report = files.path().join("季度报告.bin");
        let bytes = lanchat_tests::file_content(300_000, 51);
        std::fs::write(&report, &bytes)?;
        let empty = files.path().join("empty.txt");
        std::fs::write(&empty, b"")?;
        let (report, empty) = (report.to_str().unwrap(), empty.to_str().unwrap());
        let out = lanchat(
            &a.data_dir,
            &[
                "send",
                "--to",
                "Bravo",
                "--file",
                report,
                "--file",
                empty,
                "two files",
            ],
        )
        .await;
        anyhow::ensure!(out.status.success(), "send --file: {}", stderr(&out));
        let said = stdout(&out);
        anyhow::ensure!(
            said.lines().count() == 3
                && said.contains("file 季度报告.bin (300000 bytes)")
                && said.contains("file empty.txt (0 bytes)"),
            "{said}"
        );
        let got = wait_until(DELIVERY, "bravo to get the report", || async {
            let h = history(b, &dm(&mesh.ids[0])).await.ok()?;
            let file = h
                .iter()
                .flat_map(|m| &m.attachments)
                .find(|f| f.name == "季度报告.bin")?
                .file_id
                .clone();
            h.iter().any(|m| m.text == "two files").then_some(file)
        })
        .await?;
        wait_until(DELIVERY, "bravo to download the report", || async {
            let resp = b.get(&format!("v1/files/{got}")).await.ok()?;
            if resp.status() != 200 {
                return None;
            }
            (resp.bytes().await.ok()? == bytes).then_some(())
        })
        .await?;
        // A folder, or a file that is not there, is refused and says why — before
        // the text or the good file before it is sent.
        let folder = files.path().to_str().unwrap();
        let out = lanchat(
            &a.data_dir,
            &[
                "send",
                "--to",
                "Bravo",
                "--file",
                report,
                "--file",
                folder,
                "never sent",
            ],
        )
        .await;
        anyhow::ensure!(out.status.code() == Some(1), "folder: {:?}", out.status);
        anyhow::ensure!(stderr(&out).contains("is not a file"), "{}", stderr(&out));
        let out = lanchat(
            &a.data_dir,
            &["send", "--to", "Bravo", "--file", "/no/such/file"],
        )
        .await;
        anyhow::ensure!(out.status.code() == Some(1), "missing: {:?}", out.status);
        anyhow::ensure!(stderr(&out).contains("cannot read"), "{}", stderr(&out));
        let h = history(a, &dm(b_id)).await?;
        anyhow::ensure!(h.iter().filter(|m| !m.attachments.is_empty()).count() == 2);
        anyhow::ensure!(!h.iter().any(|m| m.text == "never sent"));

        // Carol takes bravo's name: "bravo" now means two people.
        let (code, body) = c
            .put_json(
                "v1/settings",
                &json!({"lan_mesh": {"display_name": "bravo"}}),
            )
            .await?;
        anyhow::ensure!(code.is_success(), "{body}");
        wait_until(ONLINE, "alpha to see carol renamed", || async {
            let out = lanchat(&a.data_dir, &["peers", "--json"]).await;
            let peers: Vec<PeerView> = serde_json::from_slice(&out.stdout).ok()?;
            peers
                .iter()
                .any(|p| p.peer_id == c_id && p.display_name == "bravo")
                .then_some(())
        })
        .await?;
        let out = lanchat(&a.data_dir, &["send", "--to", "bravo", "who gets this?"]).await;
        anyhow::ensure!(out.status.code() == Some(1), "ambiguous: {:?}", out.status);
        let err = stderr(&out);
        anyhow::ensure!(
            err.contains("ambiguous") && err.contains(b_id) && err.contains(c_id),
            "{err}"
        );
        let out = lanchat(&a.data_dir, &["send", "--to", "nobody-here", "hi"]).await;
        anyhow::ensure!(out.status.code() == Some(1));
        anyhow::ensure!(stderr(&out).contains("nobody-here"), "{}", stderr(&out));
        // Nothing of the refused sends was stored.
        for id in [b_id, c_id] {
            let h = history(a, &dm(id)).await?;
            anyhow::ensure!(!h
                .iter()
                .any(|m| m.text == "who gets this?" || m.text == "hi"));
        }
        Ok(())
    }
    .await;
    mesh.explain(result).unwrap();
}
