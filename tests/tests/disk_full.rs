//! Receiving while the disk is full (issue 16, item 5), with two real `lanchat serve`
//! processes on loopback; the receiver's data directory is a small tmpfs this test
//! mounts (so it needs root: it says so and skips otherwise).
//!
//! `a_full_disk_stores_and_acks_nothing_and_delivery_resumes_when_space_returns`:
//! A and B chat; B's tmpfs is filled to the last byte with a filler file; A sends →
//! B's status shows `disk_full`, B does not have the message and A's copy is not
//! `delivered` (B acknowledged nothing it did not store), B's database passes
//! `PRAGMA integrity_check` while full; the filler is removed → the message arrives
//! exactly once, A shows it `delivered`, the warning goes away, and the database still
//! passes the check after B stops. The tmpfs is unmounted when the test ends, passing
//! or not.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use api_types::MessageStatus;
use lanchat_tests::chat::{dm, history, send_dm, wait_all_delivered, wait_contact_online};
use lanchat_tests::{wait_until, NodeProcess, PairPlan, Side};

const SECRET: &str = "disk-full-office-secret";
const ONLINE: Duration = Duration::from_secs(30);
const DELIVERY: Duration = Duration::from_secs(60);
const TMPFS_SIZE: &str = "24m";

fn effective_uid() -> Option<u32> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
}

/// A tmpfs mounted at `path`, unmounted on drop (also when the test panics).
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mount -t tmpfs on {} failed",
            path.display()
        );
        Tmpfs {
            path: path.to_path_buf(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a node still holding files in it (a failed test) cannot keep it mounted.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Fills the file system of `dir` to the last byte; returns the filler's path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0x5a_u8; 64 * 1024];
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    // Whatever is left is smaller than a page: one more byte at a time.
    while let Ok(1..) = file.write(&[0]) {}
    let _ = file.sync_all();
    path
}

fn integrity(db: &Path) -> String {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    conn.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
        .unwrap()
}

async fn warning_codes(node: &NodeProcess) -> Vec<String> {
    let Ok(status) = node.get_json("v1/status").await else {
        return Vec::new();
    };
    status["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|w| w["code"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stores_and_acks_nothing_and_delivery_resumes_when_space_returns() {
    if effective_uid() != Some(0) {
        eprintln!(
            "SKIPPED: this test mounts a tmpfs as the receiver's data directory, which needs \
             root; run it as root (e.g. in the CI container) to prove the disk-full behaviour"
        );
        return;
    }
    let plan = PairPlan::new(SECRET, SECRET)
        .unwrap()
        .keep_in_artifacts("disk_full/receiver")
        .unwrap()
        .env_both("LANCHAT_RETRY_FIRST_MS", "200")
        .env_both("LANCHAT_RETRY_MAX_MS", "1000");
    let b_dir = plan.data_dir(Side::B);
    let _tmpfs = Tmpfs::mount(&b_dir, TMPFS_SIZE);
    let mut pair = plan.start().await.unwrap();
    let (a_id, b_id) = (pair.a_id.clone(), pair.b_id.clone());
    wait_contact_online(&pair.a, &b_id, true, ONLINE)
        .await
        .unwrap();
    let first = send_dm(&pair.a, &dm(&b_id), "before the disk filled up")
        .await
        .unwrap();
    wait_all_delivered(
        &pair.a,
        &dm(&b_id),
        std::slice::from_ref(&first.id),
        DELIVERY,
    )
    .await
    .unwrap();

    let filler = fill(&b_dir);
    let waiting = send_dm(&pair.a, &dm(&b_id), "while the disk is full")
        .await
        .unwrap();
    let result = async {
        wait_until(DELIVERY, "B to report disk_full", || async {
            warning_codes(&pair.b)
                .await
                .iter()
                .any(|c| c == "disk_full")
                .then_some(())
        })
        .await?;
        // B refuses what it cannot store: it has to be unacknowledged on A.
        let on_b = history(&pair.b, &dm(&a_id)).await?;
        anyhow::ensure!(
            on_b.iter().all(|m| m.id != waiting.id),
            "B shows a message it could not store"
        );
        let on_a = history(&pair.a, &dm(&b_id)).await?;
        let status = on_a.iter().find(|m| m.id == waiting.id).map(|m| m.status);
        anyhow::ensure!(
            matches!(status, Some(MessageStatus::Pending | MessageStatus::Sent)),
            "A's message is {status:?} while B's disk is full"
        );
        anyhow::ensure!(
            integrity(&b_dir.join("lanchat.db")) == "ok",
            "B's database fails the integrity check while full"
        );
        anyhow::ensure!(
            pair.b.log().contains("the database cannot be written"),
            "B logged nothing about the full disk"
        );

        std::fs::remove_file(&filler)?;
        wait_all_delivered(
            &pair.a,
            &dm(&b_id),
            std::slice::from_ref(&waiting.id),
            DELIVERY,
        )
        .await?;
        let on_b = history(&pair.b, &dm(&a_id)).await?;
        let copies = on_b.iter().filter(|m| m.id == waiting.id).count();
        anyhow::ensure!(copies == 1, "B holds the message {copies} times");
        wait_until(DELIVERY, "B's disk_full warning to clear", || async {
            (!warning_codes(&pair.b)
                .await
                .iter()
                .any(|c| c == "disk_full"))
            .then_some(())
        })
        .await?;
        Ok(())
    }
    .await;
    pair.explain(result).unwrap();
    pair.stop(Side::B).await.unwrap();
    assert_eq!(integrity(&b_dir.join("lanchat.db")), "ok");
    pair.stop(Side::A).await.unwrap();
}

async fn upload(node: &NodeProcess, conversation: &str, name: &str, bytes: Vec<u8>) -> String {
    let resp = node
        .http()
        .post(node.api_url(&format!(
            "v1/conversations/{conversation}/files?name={name}"
        )))
        .bearer_auth(&node.token)
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let message: serde_json::Value = resp.json().await.unwrap();
    message["attachments"][0]["file_id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn file_status(node: &NodeProcess, file_id: &str) -> Option<serde_json::Value> {
    node.get_json(&format!("v1/files/{file_id}/status"))
        .await
        .ok()
}

/// Files (issue 17): a file larger than the receiver's free space fails at once with
/// the reason; a download whose disk fills up while it runs stops storing (a clear
/// error, nothing corrupted) and completes, byte for byte, once space returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_that_cannot_fit_fail_clearly_and_a_full_disk_mid_download_resumes() {
    if effective_uid() != Some(0) {
        eprintln!("SKIPPED: this test mounts a tmpfs as the receiver's data directory (root)");
        return;
    }
    let plan = PairPlan::new(SECRET, SECRET)
        .unwrap()
        .keep_in_artifacts("disk_full/files")
        .unwrap();
    let b_dir = plan.data_dir(Side::B);
    let _tmpfs = Tmpfs::mount(&b_dir, "160m");
    let mut pair = plan.start().await.unwrap();
    let (a_id, b_id) = (pair.a_id.clone(), pair.b_id.clone());
    wait_contact_online(&pair.a, &b_id, true, ONLINE)
        .await
        .unwrap();
    let result = async {
        let (status, _) = pair
            .b
            .put_json(
                "v1/settings",
                &serde_json::json!({"files": {"auto_download_max_bytes": 200_000_000}}),
            )
            .await?;
        anyhow::ensure!(status.is_success());
        // 120 MB and the margin do not fit in what is left of 160 MB.
        let too_big = upload(
            &pair.a,
            &dm(&b_id),
            "too-big.bin",
            lanchat_tests::file_content(120_000_000, 3),
        )
        .await;
        let b = &pair.b;
        let reason = wait_until(DELIVERY, "B to refuse the file it cannot hold", || async {
            let s = file_status(b, &too_big).await?;
            (s["state"] == "failed").then(|| s["error"].as_str().unwrap_or_default().to_string())
        })
        .await?;
        anyhow::ensure!(reason.contains("not enough disk space"), "{reason}");

        // 60 MB fits; the disk fills up (another program) as soon as B begins.
        let (status, _) = pair
            .b
            .put_json(
                "v1/settings",
                &serde_json::json!({"files": {"auto_download_max_bytes": 0}}),
            )
            .await?;
        anyhow::ensure!(status.is_success());
        let bytes = lanchat_tests::file_content(60_000_000, 5);
        let file_id = upload(&pair.a, &dm(&b_id), "fits.bin", bytes.clone()).await;
        wait_until(DELIVERY, "the file message on B", || async {
            file_status(b, &file_id).await.map(drop)
        })
        .await?;
        let resp = pair
            .b
            .http()
            .post(pair.b.api_url(&format!("v1/files/{file_id}/fetch")))
            .bearer_auth(&pair.b.token)
            .send()
            .await?;
        anyhow::ensure!(resp.status().as_u16() == 202, "fetch: {}", resp.status());
        let filler = fill(&b_dir);
        let reason = wait_until(DELIVERY, "B to report the full disk", || async {
            let s = file_status(b, &file_id).await?;
            (s["state"] == "failed").then(|| s["error"].as_str().unwrap_or_default().to_string())
        })
        .await?;
        anyhow::ensure!(reason.contains("disk is full"), "{reason}");
        anyhow::ensure!(integrity(&b_dir.join("lanchat.db")) == "ok");

        std::fs::remove_file(&filler)?;
        wait_until(
            DELIVERY,
            "the download to finish once space returned",
            || async {
                let s = file_status(b, &file_id).await?;
                (s["state"] == "available").then_some(())
            },
        )
        .await?;
        let got = b.get(&format!("v1/files/{file_id}")).await?.bytes().await?;
        anyhow::ensure!(got.as_ref() == bytes.as_slice(), "B's copy differs");
        let _ = a_id;
        Ok(())
    }
    .await;
    pair.explain(result).unwrap();
    pair.stop(Side::B).await.unwrap();
    assert_eq!(integrity(&b_dir.join("lanchat.db")), "ok");
}
