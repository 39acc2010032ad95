//! Local files and the local API (issue 16, items 4 and 5), with real `lanchat serve`
//! processes whose stdout and stderr go to a file (not a terminal):
//!
//! - `the_token_and_the_secret_reach_no_log_response_or_other_file`: two nodes, a new
//!   secret set through the API on both, DMs both ways, many endpoints read (and a
//!   refused request) → neither the token nor the secret (old or new) is in any log
//!   line, stdout, API response body, or any file of the data directories except the
//!   three that must hold them (`api-token`, `api.json`, `settings.json`); the logs
//!   carry no ANSI escape; stdout says where `api.json` is instead of the `#token=` link.
//! - `wider_modes_are_repaired_at_the_next_start`: the directory made 0755 and every
//!   file 0644 (and a stray file added) while stopped → after a start the directory is
//!   0700 and every file 0600, and the log names each repair.
//! - `a_corrupt_database_or_settings_file_stops_the_start_and_is_left_untouched`:
//!   garbage as `lanchat.db`, as `settings.json`, a bad value in `settings.json` →
//!   the process exits non-zero with one line naming the file and saying what to do,
//!   and the file's bytes are unchanged.
//! - `a_hand_edit_of_settings_json_is_applied_live_and_a_broken_one_never_overwritten`.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use lanchat_tests::chat::{dm, send_dm, wait_all_delivered, wait_contact_online};
use lanchat_tests::{lanchat_bin, wait_until, NodeProcess, PairPlan, Side};

const OLD_SECRET: &str = "first-office-secret-7Q2M";
const NEW_SECRET: &str = "PK3RT-9WQ2M-HX7VD-C4N8F";
const ONLINE: Duration = Duration::from_secs(30);
const DELIVERY: Duration = Duration::from_secs(45);
const EXIT: Duration = Duration::from_secs(30);

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.is_file() {
                out.push(path);
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// GETs `path` and keeps the body, whatever the status.
async fn body(node: &NodeProcess, path: &str, bodies: &mut Vec<(String, String)>) {
    let resp = node.get(path).await.unwrap();
    bodies.push((path.to_string(), resp.text().await.unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_and_the_secret_reach_no_log_response_or_other_file() {
    let plan = PairPlan::new(OLD_SECRET, OLD_SECRET)
        .unwrap()
        .keep_in_artifacts("local_files/secrets")
        .unwrap()
        .env_both("LANCHAT_LOG", "debug");
    let root = plan.data_dir(Side::A).parent().unwrap().to_path_buf();
    let mut pair = plan.start().await.unwrap();
    let (a_id, b_id) = (pair.a_id.clone(), pair.b_id.clone());
    wait_contact_online(&pair.a, &b_id, true, ONLINE)
        .await
        .unwrap();

    let mut bodies: Vec<(String, String)> = Vec::new();
    for node in [&pair.a, &pair.b] {
        let (status, view) = node
            .put_json(
                "v1/settings",
                &serde_json::json!({"lan_mesh": {"shared_secret": NEW_SECRET}}),
            )
            .await
            .unwrap();
        assert!(status.is_success(), "{status}: {view}");
        assert_eq!(view["lan_mesh"]["secret_set"], true, "{view}");
        bodies.push(("PUT v1/settings".into(), view.to_string()));
    }
    wait_contact_online(&pair.a, &b_id, true, ONLINE)
        .await
        .unwrap();
    wait_contact_online(&pair.b, &a_id, true, ONLINE)
        .await
        .unwrap();
    let to_b = send_dm(&pair.a, &dm(&b_id), "你好 bravo").await.unwrap();
    let to_a = send_dm(&pair.b, &dm(&a_id), "hello alpha").await.unwrap();
    wait_all_delivered(
        &pair.a,
        &dm(&b_id),
        std::slice::from_ref(&to_b.id),
        DELIVERY,
    )
    .await
    .unwrap();
    wait_all_delivered(
        &pair.b,
        &dm(&a_id),
        std::slice::from_ref(&to_a.id),
        DELIVERY,
    )
    .await
    .unwrap();

    for (node, peer) in [(&pair.a, &b_id), (&pair.b, &a_id)] {
        for path in [
            "v1/status".to_string(),
            "v1/settings".into(),
            "v1/peers".into(),
            "v1/contacts".into(),
            "v1/conversations".into(),
            format!("v1/conversations/{}/messages", dm(peer)),
            "v1/presence".into(),
            "v1/groups".into(),
            "v1/group-invitations".into(),
            "v1/search?q=alpha".into(),
            "v1/diagnostics".into(),
            "v1/diagnostics/export".into(),
            "v1/no-such-endpoint".into(),
        ] {
            body(node, &path, &mut bodies).await;
        }
        // A refused request (wrong token) and a bad settings value.
        let refused = node
            .http()
            .get(node.api_url("v1/status"))
            .bearer_auth("0".repeat(64))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status().as_u16(), 401);
        bodies.push(("401".into(), refused.text().await.unwrap()));
        let (status, bad) = node
            .put_json(
                "v1/settings",
                &serde_json::json!({"lan_mesh": {"shared_secret": "short"}}),
            )
            .await
            .unwrap();
        assert_eq!(status.as_u16(), 400, "{bad}");
        bodies.push(("PUT bad secret".into(), bad.to_string()));
    }
    let tokens = [pair.a.token.clone(), pair.b.token.clone()];
    pair.stop(Side::A).await.unwrap();
    pair.stop(Side::B).await.unwrap();

    let secrets = [
        OLD_SECRET,
        NEW_SECRET,
        tokens[0].as_str(),
        tokens[1].as_str(),
    ];
    for (what, text) in &bodies {
        for s in secrets {
            assert!(
                !text.contains(s),
                "the response to {what} holds a secret: {text}"
            );
        }
    }
    let allowed = ["api-token", "api.json", "settings.json"];
    let mut checked = 0;
    for file in files_under(&root) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if allowed.contains(&name.as_str()) {
            // The search itself works: the files that must hold them do.
            let bytes = std::fs::read(&file).unwrap();
            let held = if name == "settings.json" {
                NEW_SECRET
            } else if file.starts_with(root.join("a")) {
                tokens[0].as_str()
            } else {
                tokens[1].as_str()
            };
            assert!(
                contains(&bytes, held),
                "{} lacks its secret",
                file.display()
            );
            continue;
        }
        let bytes = std::fs::read(&file).unwrap();
        for s in secrets {
            assert!(!contains(&bytes, s), "{} holds a secret", file.display());
        }
        if name.ends_with(".log") {
            assert!(
                !contains(&bytes, "\x1b["),
                "{} holds terminal colour codes",
                file.display()
            );
            let text = String::from_utf8_lossy(&bytes);
            assert!(text.contains("The API token is in"), "{text}");
            assert!(!text.contains("#token="), "{text}");
        }
        checked += 1;
    }
    // Both logs, both databases (with their WALs or checkpointed), the keys, …
    assert!(
        checked >= 6,
        "only {checked} files checked under {}",
        root.display()
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wider_modes_are_repaired_at_the_next_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let mut node = NodeProcess::serve(&dir).await.unwrap();
    node.stop().await.unwrap();
    std::fs::write(dir.join("notes.txt"), "left here by someone").unwrap();
    let files = files_under(&dir);
    assert!(files.len() >= 5, "{files:?}");
    for file in &files {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut node = NodeProcess::serve(&dir).await.unwrap();
    assert_eq!(mode(&dir), 0o700);
    // Everything the node made since (database journals, api.json) is private too.
    for file in files_under(&dir) {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    let log = node.log();
    for file in &files {
        let needle = format!("path={}", file.display());
        assert!(
            log.contains(&needle),
            "no repair logged for {needle}:\n{log}"
        );
    }
    assert!(log.contains("old_mode=0644"), "{log}");
    assert!(log.contains("old_mode=0755"), "{log}");
    node.stop().await.unwrap();
}

/// Runs `lanchat serve` on `dir` until it exits; returns whether it succeeded and what
/// it wrote.
async fn serve_until_exit(dir: &Path) -> (bool, String) {
    let mut child = Command::new(lanchat_bin().unwrap())
        .args(["serve", "--data-dir"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let exited = wait_until(EXIT, "lanchat to exit", || {
        let status = child.try_wait().unwrap();
        async move { status }
    })
    .await;
    if exited.is_err() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_database_or_settings_file_stops_the_start_and_is_left_untouched() {
    // (file, content, what the one-line message must say)
    // An SQLite header (page size 4096) on a first page of zeros: no schema to read.
    let mut zeroed = b"SQLite format 3\0\x10\x00\x01\x01\x00\x40\x20\x20".to_vec();
    zeroed.resize(4096, 0);
    let cases: [(&str, &[u8], &[&str]); 4] = [
        (
            "lanchat.db",
            b"this is not a database, it is a shopping list\n",
            &["lanchat.db", "not an SQLite database", "left untouched"],
        ),
        ("lanchat.db", &zeroed, &["lanchat.db", "left untouched"]),
        (
            "settings.json",
            b"{ \"lan_mesh\": { \"enabled\": tru",
            &["settings.json", "not valid JSON", "left untouched"],
        ),
        (
            "settings.json",
            br#"{"lan_mesh": {"node_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "listen_port": 0}}"#,
            &["settings.json", "lan_mesh.listen_port", "left untouched"],
        ),
    ];
    for (i, (name, content, says)) in cases.into_iter().enumerate() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(format!("case{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(name);
        std::fs::write(&file, content).unwrap();
        let before = std::fs::read(&file).unwrap();
        let (ok, out) = serve_until_exit(&dir).await;
        assert!(!ok, "case {i}: started on a bad {name}:\n{out}");
        let line = out
            .lines()
            .find(|l| l.starts_with("lanchat: "))
            .unwrap_or_else(|| panic!("case {i}: no error line:\n{out}"));
        for s in says {
            assert!(line.contains(s), "case {i}: {s:?} missing from {line:?}");
        }
        assert!(
            std::fs::read(&file).unwrap() == before,
            "case {i}: {name} was changed"
        );
        assert!(!dir.join("api.json").exists(), "case {i}: it served anyway");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_edit_of_settings_json_is_applied_live_and_a_broken_one_never_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let node = NodeProcess::serve(&dir).await.unwrap();
    let path = dir.join("settings.json");
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    doc["lan_mesh"]["display_name"] = "手改的名字".into();
    std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    wait_until(EXIT, "the hand-edited name in the status", || async {
        let status = node.get_json("v1/status").await.ok()?;
        (status["display_name"] == "手改的名字").then_some(())
    })
    .await
    .unwrap();
    // A save from the UI builds on the edit.
    let (status, view) = node
        .put_json(
            "v1/settings",
            &serde_json::json!({"ui": {"welcome_done": true}}),
        )
        .await
        .unwrap();
    assert!(status.is_success(), "{view}");
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(saved["lan_mesh"]["display_name"], "手改的名字");

    let broken = b"{ \"lan_mesh\": { \"display_name\": \"half an edit".to_vec();
    std::fs::write(&path, &broken).unwrap();
    let warning = wait_until(EXIT, "a settings_file warning", || async {
        let status = node.get_json("v1/status").await.ok()?;
        status["warnings"]
            .as_array()?
            .iter()
            .find(|w| w["code"] == "settings_file")
            .cloned()
    })
    .await
    .unwrap();
    assert!(
        warning["message"]
            .as_str()
            .unwrap()
            .contains("settings.json"),
        "{warning}"
    );
    let (status, refused) = node
        .put_json(
            "v1/settings",
            &serde_json::json!({"ui": {"welcome_done": false}}),
        )
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 409, "{refused}");
    assert_eq!(refused["code"], "settings_file_invalid", "{refused}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        broken,
        "the broken edit was overwritten"
    );
    let status = node.get_json("v1/status").await.unwrap();
    assert_eq!(
        status["display_name"], "手改的名字",
        "the node kept what it had"
    );
    assert!(node.log().contains("edited by hand"), "{}", node.log());
}
