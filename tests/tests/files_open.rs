//! "Open" and "Show in folder" for received files (issue 17) with real `lanchat serve`
//! processes on 127.0.0.1, through the local API only. The receiving node runs with
//! `LANCHAT_OPENER` set to a small script this test writes, which records the
//! arguments it is started with, and with `XDG_DOWNLOAD_DIR` in the test's directory.
//!
//! - `received_files_are_exported_under_their_names_and_opened`: bravo (auto-download
//!   off) gets files from alpha. Before a file is complete `…/open` is `409
//!   not_complete`; an unknown id is `404`. Then `…/open` puts it at
//!   `Downloads/lanchat/<name>` with the sent bytes and starts the opener with `open
//!   <path>`; `…/reveal` answers the same path (no second copy) and starts it with
//!   `reveal <path>`. Another file with the same name becomes `name (1).ext`; a folder
//!   send keeps its folder path; after a restart the earlier export is found again (by
//!   its content); a copy the user changed is never overwritten (the file is exported
//!   beside it). Alpha, running without a desktop (`DISPLAY` and `WAYLAND_DISPLAY`
//!   empty), answers `409 no_desktop` and exports nothing.
//! - `a_hostile_name_and_folder_stay_inside_the_folder`: a peer with the secret (the
//!   attack tool, `lanchat_tests::attacker`) sends bravo a signed file message whose
//!   folder is `... / .. /.ssh/CON` and whose name is `..authorized_keys ` (both pass
//!   the wire's one-component check); bravo already holds the content. The export
//!   lands at `Downloads/lanchat/_/_/ssh/_CON/authorized_keys`, inside the folder, and
//!   nothing is written anywhere else.
//! - `a_full_disk_is_refused_and_leaves_nothing_behind` (root: it mounts a 1 MiB tmpfs as
//!   the downloads folder, and says so and skips otherwise): opening a 3 MB file is `507
//!   disk_full` and the folder is left empty.
//!
//! Data directories, logs and the downloads folders stay in
//! `target/test-artifacts/files_open/<test>/`.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context};
use api_types::{FileState, FileStatusView};
use lan_mesh::envelope::{DmPayload, KIND_DM_SEND};
use lanchat_tests::attacker::{link_addr, Answer, Attacker};
use lanchat_tests::chat::{dm, wait_contact_online};
use lanchat_tests::files::{opener_calls, write_opener};
use lanchat_tests::{wait_until, NodeProcess, PairPlan, Side};

const SECRET: &str = "office-files-open";
const ONLINE: Duration = Duration::from_secs(15);
const TRANSFER: Duration = Duration::from_secs(60);
/// The opener script is started detached: its record appears shortly after the answer.
const OPENER_RUN: Duration = Duration::from_secs(10);

async fn wait_opener_call(record: &Path, want: &str) -> anyhow::Result<()> {
    wait_until(
        OPENER_RUN,
        &format!("the opener started with {want}"),
        || async { opener_calls(record).iter().any(|c| c == want).then_some(()) },
    )
    .await
}

/// Sends one file (`name`, in `folder`) from `node` into `conversation`: its file id.
async fn upload(
    node: &NodeProcess,
    conversation: &str,
    name: &str,
    folder: Option<&str>,
    bytes: Vec<u8>,
) -> anyhow::Result<String> {
    let message = lanchat_tests::files::upload(node, conversation, name, folder, bytes).await?;
    Ok(message
        .attachments
        .first()
        .context("no attachment")?
        .file_id
        .clone())
}

/// POSTs `path`; the status and the body as JSON (`null` when it is none).
async fn post(node: &NodeProcess, path: &str) -> anyhow::Result<(u16, serde_json::Value)> {
    let resp = node
        .http()
        .post(node.api_url(path))
        .bearer_auth(&node.token)
        .send()
        .await?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or_default()))
}

/// `POST /api/v1/files/{id}/{action}` that must answer `200 {"path"}`: the path.
async fn export(node: &NodeProcess, file_id: &str, action: &str) -> anyhow::Result<PathBuf> {
    let (status, body) = post(node, &format!("v1/files/{file_id}/{action}")).await?;
    ensure!(status == 200, "{action} {file_id}: {status} {body}");
    Ok(PathBuf::from(
        body["path"].as_str().context("no path in the answer")?,
    ))
}

async fn fetch_and_wait(node: &NodeProcess, file_id: &str) -> anyhow::Result<()> {
    let (status, body) = post(node, &format!("v1/files/{file_id}/fetch")).await?;
    ensure!(status == 202, "fetch {file_id}: {status} {body}");
    wait_until(TRANSFER, "the file is complete", || async {
        let s: FileStatusView = serde_json::from_value(
            node.get_json(&format!("v1/files/{file_id}/status"))
                .await
                .ok()?,
        )
        .ok()?;
        (s.state == FileState::Available).then_some(())
    })
    .await
}

/// Waits until `node` has the file message carrying `file_id` in `conversation`.
async fn wait_file_message(
    node: &NodeProcess,
    conversation: &str,
    file_id: &str,
) -> anyhow::Result<()> {
    lanchat_tests::files::wait_file_message(node, conversation, file_id, TRANSFER)
        .await
        .map(drop)
}

/// Every file and folder below `dir`, relative, sorted (hidden ones included).
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            out.push(
                path.strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
            if path.is_dir() && !path.is_symlink() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

struct Setup {
    pair: lanchat_tests::LoopbackPair,
    /// Bravo's downloads folder (`XDG_DOWNLOAD_DIR`) and the opener's record.
    downloads: PathBuf,
    record: PathBuf,
    /// Alpha's downloads folder: alpha has no desktop.
    a_downloads: PathBuf,
}

/// Alpha without a desktop, bravo with one (the opener script) and auto-download off.
async fn setup(test: &str) -> anyhow::Result<Setup> {
    let plan = PairPlan::new(SECRET, SECRET)?.keep_in_artifacts(&format!("files_open/{test}"))?;
    let root = plan
        .data_dir(Side::A)
        .parent()
        .context("no root")?
        .to_path_buf();
    let downloads = root.join("downloads-b");
    let a_downloads = root.join("downloads-a");
    let record = root.join("opener-calls.txt");
    let script = write_opener(&root, &record)?;
    let script = script.to_str().context("a path that is not UTF-8")?;
    let plan = plan
        .settings(Side::B, |doc| {
            doc["files"] = serde_json::json!({ "auto_download_max_bytes": 0 });
        })
        .env_both("LANCHAT_OPENER", script)
        .env(Side::A, "DISPLAY", "")
        .env(Side::A, "WAYLAND_DISPLAY", "")
        .env(Side::A, "XDG_DOWNLOAD_DIR", a_downloads.to_str().unwrap())
        .env(Side::B, "DISPLAY", ":lanchat-test")
        .env(Side::B, "WAYLAND_DISPLAY", "")
        .env(Side::B, "XDG_DOWNLOAD_DIR", downloads.to_str().unwrap());
    let pair = plan.start().await?;
    wait_contact_online(pair.node(Side::A), pair.id(Side::B), true, ONLINE).await?;
    wait_contact_online(pair.node(Side::B), pair.id(Side::A), true, ONLINE).await?;
    Ok(Setup {
        pair,
        downloads,
        record,
        a_downloads,
    })
}

#[tokio::test]
async fn received_files_are_exported_under_their_names_and_opened() -> anyhow::Result<()> {
    let mut s = setup("received_files_are_exported_under_their_names_and_opened").await?;
    let result = received_files(&mut s).await;
    s.pair.explain(result)
}

async fn received_files(s: &mut Setup) -> anyhow::Result<()> {
    let folder = s.downloads.join("lanchat");
    let to_b = dm(s.pair.id(Side::B));
    let from_a = dm(s.pair.id(Side::A));
    let name = "季度报告 Q3.pdf";
    let first = lanchat_tests::file_content(300_000, 1);
    let first_id = upload(s.pair.node(Side::A), &to_b, name, None, first.clone()).await?;
    let b = s.pair.node(Side::B);
    wait_file_message(b, &from_a, &first_id).await?;

    // Not complete yet (auto-download is off), and ids no message here attached.
    for action in ["open", "reveal"] {
        let (status, body) = post(b, &format!("v1/files/{first_id}/{action}")).await?;
        ensure!(
            status == 409 && body["code"] == "not_complete",
            "{action} before the download: {status} {body}"
        );
        let unknown = "ab".repeat(32);
        for id in [unknown.as_str(), "not-a-file-id"] {
            let (status, body) = post(b, &format!("v1/files/{id}/{action}")).await?;
            ensure!(
                status == 404 && body["code"] == "not_found",
                "{action} {id}: {status} {body}"
            );
        }
    }
    ensure!(!s.downloads.exists(), "nothing exported yet");

    // Open: exported under its name, the opener started with it.
    fetch_and_wait(b, &first_id).await?;
    let opened = export(b, &first_id, "open").await?;
    ensure!(
        opened == folder.join(name),
        "opened as {}",
        opened.display()
    );
    ensure!(
        std::fs::read(&opened)? == first,
        "the exported bytes differ"
    );
    wait_opener_call(&s.record, &format!("2|open|{}", opened.display())).await?;

    // Show in folder: the same file, no second copy.
    let shown = export(b, &first_id, "reveal").await?;
    ensure!(shown == opened, "revealed {}", shown.display());
    wait_opener_call(&s.record, &format!("2|reveal|{}", opened.display())).await?;
    ensure!(
        tree(&s.downloads) == vec!["lanchat".to_string(), format!("lanchat/{name}")],
        "{:?}",
        tree(&s.downloads)
    );

    // Other content under the same name: a numbered copy; the first stays as it was.
    let second = lanchat_tests::file_content(300_000, 2);
    let second_id = upload(s.pair.node(Side::A), &to_b, name, None, second.clone()).await?;
    let b = s.pair.node(Side::B);
    wait_file_message(b, &from_a, &second_id).await?;
    fetch_and_wait(b, &second_id).await?;
    let numbered = export(b, &second_id, "open").await?;
    ensure!(
        numbered == folder.join("季度报告 Q3 (1).pdf"),
        "{}",
        numbered.display()
    );
    ensure!(std::fs::read(&numbered)? == second);
    ensure!(std::fs::read(&opened)? == first, "the first export changed");

    // A file of a sent folder keeps its folder path.
    let plan = b"step 1: ship it\n".to_vec();
    let plan_id = upload(
        s.pair.node(Side::A),
        &to_b,
        "plan.txt",
        Some("项目/2026"),
        plan.clone(),
    )
    .await?;
    let b = s.pair.node(Side::B);
    wait_file_message(b, &from_a, &plan_id).await?;
    fetch_and_wait(b, &plan_id).await?;
    let in_folder = export(b, &plan_id, "reveal").await?;
    ensure!(
        in_folder == folder.join("项目").join("2026").join("plan.txt"),
        "{}",
        in_folder.display()
    );
    ensure!(std::fs::read(&in_folder)? == plan);
    wait_opener_call(&s.record, &format!("2|reveal|{}", in_folder.display())).await?;

    // After a restart (nothing remembered) the earlier export is found by its content.
    s.pair.restart(Side::B).await?;
    let b = s.pair.node(Side::B);
    let again = export(b, &first_id, "open").await?;
    ensure!(again == opened, "after a restart: {}", again.display());
    let before = tree(&s.downloads);

    // The user changed the first copy (same size): it is theirs; a fresh copy goes
    // beside it.
    let mut edited = first.clone();
    edited[0] ^= 0xff;
    std::fs::write(&opened, &edited)?;
    let fresh = export(b, &first_id, "open").await?;
    ensure!(
        fresh == folder.join("季度报告 Q3 (2).pdf"),
        "{}",
        fresh.display()
    );
    ensure!(std::fs::read(&fresh)? == first);
    ensure!(
        std::fs::read(&opened)? == edited,
        "the user's edit was overwritten"
    );
    let mut want = before.clone();
    want.push("lanchat/季度报告 Q3 (2).pdf".into());
    want.sort();
    ensure!(tree(&s.downloads) == want, "{:?}", tree(&s.downloads));

    // Every start of the opener had exactly two arguments: the verb and one path. The
    // opener runs detached, so the last ones may still be starting: wait for all six.
    wait_opener_call(&s.record, &format!("2|open|{}", fresh.display())).await?;
    let calls = wait_until(OPENER_RUN, "six starts of the opener", || async {
        let calls = opener_calls(&s.record);
        (calls.len() >= 6).then_some(calls)
    })
    .await?;
    ensure!(
        calls.iter().all(|c| c.starts_with("2|")) && calls.len() == 6,
        "{calls:?}"
    );

    // Alpha, the sender, has every file complete, but no desktop: nothing exported.
    for action in ["open", "reveal"] {
        let (status, body) = post(
            s.pair.node(Side::A),
            &format!("v1/files/{first_id}/{action}"),
        )
        .await?;
        ensure!(
            status == 409 && body["code"] == "no_desktop",
            "{action} on alpha: {status} {body}"
        );
    }
    ensure!(!s.a_downloads.exists(), "alpha exported something");
    ensure!(
        opener_calls(&s.record).len() == 6,
        "alpha started the opener"
    );
    Ok(())
}

#[tokio::test]
async fn a_hostile_name_and_folder_stay_inside_the_folder() -> anyhow::Result<()> {
    let s = setup("a_hostile_name_and_folder_stay_inside_the_folder").await?;
    let result = hostile_names(&s).await;
    s.pair.explain(result)
}

async fn hostile_names(s: &Setup) -> anyhow::Result<()> {
    let b = s.pair.node(Side::B);
    let b_id: api_types::NodeId = s.pair.id(Side::B).parse()?;
    let bytes = lanchat_tests::file_content(50_000, 3);

    // Bravo holds the content already (stored, not sent); its manifest as the real
    // sender would describe it.
    let resp = b
        .http()
        .post(b.api_url("v1/files"))
        .bearer_auth(&b.token)
        .body(bytes.clone())
        .send()
        .await?;
    ensure!(resp.status().as_u16() == 201, "store: {}", resp.status());
    let stored: serde_json::Value = resp.json().await?;
    let file_id = stored["file_id"]
        .as_str()
        .context("no file_id")?
        .to_string();
    let scratch = tempfile::tempdir()?;
    let (id, manifest) =
        storage::blobs::BlobStore::open(&scratch.path().join("blobs"))?.import(&bytes[..])?;
    ensure!(id.to_string() == file_id);

    let folder = "... / .. /.ssh/CON";
    let name = "..authorized_keys ";
    let content = api_types::FileContent {
        files: vec![api_types::FileRef {
            file_id: file_id.clone(),
            manifest: manifest.hash().to_string(),
            size: manifest.size(),
            chunk_size: manifest.chunk_size(),
            name: name.into(),
            path: Some(folder.into()),
            mime: "text/plain".into(),
            thumbnail: None,
        }],
    };
    let text = content.to_text()?;

    // Mallory, a peer with the secret, signs and sends it as a DM.
    let mallory = Attacker::new()?;
    let mut link = mallory.link(link_addr(b).await?, &b_id, SECRET).await?;
    let message_id = storage::MessageId::new();
    let sent_at = lan_mesh::delivery::now_ms();
    let hlc = chat_core::Hlc::from_wall_ms(u64::try_from(sent_at)?);
    let statement = chat_core::message_statement(
        chat_core::MessageScope::Direct { to: &b_id },
        &message_id,
        &mallory.id,
        sent_at,
        hlc,
        &text,
    );
    let payload = DmPayload {
        message_id: message_id.to_string(),
        text,
        sent_at,
        hlc: hlc.raw(),
        sig: lanchat_tests::netns::hex_encode(&mallory.keys.sign(&statement)),
    };
    let envelope = link.envelope(KIND_DM_SEND, serde_json::to_value(&payload)?);
    let answer = link.send(&envelope).await?;
    ensure!(
        matches!(answer, Answer::Acked(_)),
        "the file message: {answer:?}"
    );
    wait_file_message(b, &dm(mallory.id.as_str()), &file_id).await?;

    let opened = export(b, &file_id, "open").await?;
    let folder_root = s.downloads.join("lanchat");
    ensure!(
        opened == folder_root.join("_/_/ssh/_CON/authorized_keys"),
        "{}",
        opened.display()
    );
    ensure!(
        opened
            .canonicalize()?
            .starts_with(folder_root.canonicalize()?),
        "outside the folder: {}",
        opened.display()
    );
    ensure!(std::fs::read(&opened)? == bytes);
    let shown = export(b, &file_id, "reveal").await?;
    ensure!(shown == opened);
    wait_opener_call(&s.record, &format!("2|reveal|{}", opened.display())).await?;
    ensure!(
        tree(&s.downloads)
            == [
                "lanchat",
                "lanchat/_",
                "lanchat/_/_",
                "lanchat/_/_/ssh",
                "lanchat/_/_/ssh/_CON",
                "lanchat/_/_/ssh/_CON/authorized_keys",
            ],
        "{:?}",
        tree(&s.downloads)
    );
    Ok(())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|rest| rest.split_whitespace().nth(1))
                .map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

/// A tmpfs mounted at `path`, unmounted on drop (also when the test fails).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> anyhow::Result<Tmpfs> {
        std::fs::create_dir_all(path)?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()?;
        ensure!(status.success(), "mount -t tmpfs on {}", path.display());
        Ok(Tmpfs(path.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_full_disk_is_refused_and_leaves_nothing_behind() -> anyhow::Result<()> {
    if !is_root() {
        eprintln!("skipped: mounting a small tmpfs as the downloads folder needs root");
        return Ok(());
    }
    let s = setup("a_full_disk_is_refused_and_leaves_nothing_behind").await?;
    let _tmpfs = Tmpfs::mount(&s.downloads, "1m")?;
    let result = async {
        let b = s.pair.node(Side::B);
        let big = lanchat_tests::file_content(3_000_000, 4);
        let id = upload(
            s.pair.node(Side::A),
            &dm(s.pair.id(Side::B)),
            "big.bin",
            None,
            big,
        )
        .await?;
        wait_file_message(b, &dm(s.pair.id(Side::A)), &id).await?;
        fetch_and_wait(b, &id).await?;
        for action in ["open", "reveal"] {
            let (status, body) = post(b, &format!("v1/files/{id}/{action}")).await?;
            ensure!(
                status == 507 && body["code"] == "disk_full",
                "{action}: {status} {body}"
            );
        }
        ensure!(
            tree(&s.downloads) == ["lanchat"],
            "{:?}",
            tree(&s.downloads)
        );
        ensure!(opener_calls(&s.record).is_empty(), "the opener was started");
        Ok(())
    }
    .await;
    s.pair.explain(result)
}
