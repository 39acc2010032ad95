//! The local API of a real `lanchat serve` process, over real HTTP.

use std::os::unix::fs::PermissionsExt;

use lanchat_tests::NodeProcess;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn use_this_build() {
    // Make the harness start the binary cargo built for this very test.
    std::env::set_var("LANCHAT_BIN", env!("CARGO_BIN_EXE_lanchat"));
}

async fn start(dir: &std::path::Path) -> NodeProcess {
    use_this_build();
    NodeProcess::serve(dir).await.expect("node starts")
}

fn settings_path(node: &NodeProcess) -> std::path::PathBuf {
    node.data_dir.join("settings.json")
}

#[tokio::test]
async fn requests_without_the_right_token_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let node = start(&tmp.path().join("a")).await;
    let url = node.api_url("v1/status");

    let none = node.http().get(&url).send().await.unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    let body: Value = none.json().await.unwrap();
    assert_eq!(body["code"], "unauthorized");

    let wrong = node
        .http()
        .get(&url)
        .bearer_auth("0".repeat(64))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    let put = node
        .http()
        .put(node.api_url("v1/settings"))
        .json(&json!({"lan_mesh": {"enabled": true}}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::UNAUTHORIZED);
    let settings: Value = node.get_json("v1/settings").await.unwrap();
    assert_eq!(
        settings["lan_mesh"]["enabled"], false,
        "refused PUT changed nothing"
    );
}

#[tokio::test]
async fn foreign_host_or_origin_is_forbidden() {
    let tmp = tempfile::tempdir().unwrap();
    let node = start(&tmp.path().join("a")).await;
    let url = node.api_url("v1/status");

    // A DNS-rebinding page reaches 127.0.0.1 under its own host name.
    let rebinding = node
        .http()
        .get(&url)
        .bearer_auth(&node.token)
        .header("Host", "evil.example:80")
        .send()
        .await
        .unwrap();
    assert_eq!(rebinding.status(), StatusCode::FORBIDDEN);
    let body: Value = rebinding.json().await.unwrap();
    assert_eq!(body["code"], "forbidden_host");

    let page = node
        .http()
        .get(&node.url)
        .header("Host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        page.status(),
        StatusCode::FORBIDDEN,
        "static UI files are Host-checked too"
    );

    let cross = node
        .http()
        .get(&url)
        .bearer_auth(&node.token)
        .header("Origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    let body: Value = cross.json().await.unwrap();
    assert_eq!(body["code"], "forbidden_origin");

    let own_origin = node.url.trim_end_matches('/').to_string();
    let same = node
        .http()
        .get(&url)
        .bearer_auth(&node.token)
        .header("Origin", own_origin)
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), StatusCode::OK);
}

#[tokio::test]
async fn status_reports_the_settings_node_id_which_survives_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    let mut node = start(&dir).await;
    let status = node.get_json("v1/status").await.unwrap();
    let settings = node.get_json("v1/settings").await.unwrap();
    let node_id = settings["lan_mesh"]["node_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(status["node_id"], node_id.as_str());
    assert_eq!(node_id.len(), 26);
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["mesh_enabled"], false);
    assert_eq!(status["mesh_state"], "off");
    let api_port = reqwest::Url::parse(&node.url).unwrap().port().unwrap();
    assert_eq!(status["api_port"], api_port);
    assert!(
        !status["display_name"].as_str().unwrap().is_empty(),
        "host name fallback"
    );

    let exit = node.stop().await.unwrap();
    assert!(
        exit.success(),
        "clean exit on SIGTERM, got {exit}; the node said:\n{}",
        node.log()
    );
    assert!(
        !dir.join("api.json").exists(),
        "api.json removed on clean stop"
    );

    let node = start(&dir).await;
    let again = node.get_json("v1/status").await.unwrap();
    assert_eq!(again["node_id"], node_id.as_str());
}

#[tokio::test]
async fn bad_settings_are_refused_naming_the_field_and_good_ones_round_trip_normalised() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    let mut node = start(&dir).await;

    let (status, body) = node
        .put_json(
            "v1/settings",
            &json!({"lan_mesh": {"allowed_subnets": ["10.1.2.3", "fe80::1/10", "bad"]}}),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "invalid_field");
    assert!(
        body["field"].as_str().unwrap().contains("allowed_subnets"),
        "{body}"
    );
    assert!(body["message"].as_str().unwrap().contains("bad"), "{body}");

    let (status, body) = node
        .put_json(
            "v1/settings",
            &json!({"lan_mesh": {"heartbeat_interval_sec": 20, "peer_ttl_sec": 10}}),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["field"], "lan_mesh.peer_ttl_sec");

    let (status, body) = node
        .put_json(
            "v1/settings",
            &json!({"lan_mesh": {"allowed_subnets": ["10.1.2.3", "fe80::1/10", "10.1.2.0/24"],
                                 "display_name": "  Front desk  ", "enabled": true,
                                 "open_lan": true}}),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["lan_mesh"]["allowed_subnets"],
        json!(["10.1.2.0/24", "fe80::/10"])
    );
    assert_eq!(body["lan_mesh"]["display_name"], "Front desk");
    assert_eq!(node.get_json("v1/settings").await.unwrap(), body);
    let status = node.get_json("v1/status").await.unwrap();
    assert_eq!(status["display_name"], "Front desk");

    node.stop().await.unwrap();
    let node = start(&dir).await;
    let after = node.get_json("v1/settings").await.unwrap();
    assert_eq!(after, body, "settings persist across restarts");
}

#[tokio::test]
async fn malformed_requests_get_json_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let node = start(&tmp.path().join("a")).await;
    let put = |body: &'static str, content_type: &'static str| {
        node.http()
            .put(node.api_url("v1/settings"))
            .bearer_auth(&node.token)
            .header("Content-Type", content_type)
            .body(body)
            .send()
    };
    let resp = put("{not json", "application/json").await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], "bad_request");

    let resp = put("{}", "text/plain").await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["code"],
        "unsupported_media_type"
    );

    let resp = node.get("v1/no-such-thing").await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], "not_found");

    let resp = node
        .http()
        .delete(node.api_url("v1/status"))
        .bearer_auth(&node.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["code"],
        "method_not_allowed"
    );

    let huge = format!(
        "{{\"lan_mesh\": {{\"display_name\": \"{}\"}}}}",
        "x".repeat(200_000)
    );
    let resp = node
        .http()
        .put(node.api_url("v1/settings"))
        .bearer_auth(&node.token)
        .header("Content-Type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // The node is still fine. (A new connection: the server closes the one whose
    // oversized body it refused, and a pooled client may race that close.)
    let fresh = reqwest::Client::new()
        .get(node.api_url("v1/status"))
        .bearer_auth(&node.token)
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), StatusCode::OK);
}

#[tokio::test]
async fn secrets_are_kept_private_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let node = start(&tmp.path().join("a")).await;
    let (status, _) = node
        .put_json(
            "v1/settings",
            &json!({"lan_mesh": {"shared_secret": "office-42-strong"}}),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    for name in ["settings.json", "api-token", "api.json"] {
        let mode = std::fs::metadata(node.data_dir.join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
    let mode = std::fs::metadata(&node.data_dir)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "data dir");
    assert!(
        !node.log().contains("office-42-strong"),
        "the secret is never logged"
    );
    assert!(!node.log().contains(&format!("Bearer {}", node.token)));
}

/// The shared secret through the API (issue 15, "The secret"): refused under 12
/// characters naming the field, never returned (`secret_set`), generated on request,
/// kept when a change does not mention it; the open LAN only when chosen, and flagged
/// in the status as a weak secret from a file is.
#[tokio::test]
async fn the_shared_secret_is_write_only_checked_and_generated() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    let mut node = start(&dir).await;
    let ports = json!({
        "listen_port": lanchat_tests::free_port().unwrap(),
        "discovery_port": lanchat_tests::free_udp_port().unwrap(),
        "allowed_subnets": ["127.0.0.0/8"],
    });
    let (status, body) = node
        .put_json("v1/settings", &json!({"lan_mesh": ports}))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    let secret_warnings = async |node: &NodeProcess| -> Vec<String> {
        let status = node.get_json("v1/status").await.unwrap();
        status["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|w| w["code"].as_str().map(str::to_string))
            .filter(|c| c == "open_lan" || c == "weak_secret")
            .collect()
    };

    // A weak secret: 400 naming the field, nothing changed.
    for weak in ["office", "elevenchars"] {
        let (status, body) = node
            .put_json("v1/settings", &json!({"lan_mesh": {"shared_secret": weak}}))
            .await
            .unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["code"], "invalid_field");
        assert_eq!(body["field"], "lan_mesh.shared_secret");
    }
    // The mesh on with neither a secret nor the open LAN chosen: 400, naming the secret.
    let (status, body) = node
        .put_json("v1/settings", &json!({"lan_mesh": {"enabled": true}}))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "lan_mesh.shared_secret");
    assert_eq!(
        node.get_json("v1/settings").await.unwrap()["lan_mesh"]["enabled"],
        false
    );

    // A generated secret: four groups of five Crockford base32 characters.
    let resp = node
        .http()
        .post(node.api_url("v1/settings/secret"))
        .bearer_auth(&node.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let generated: Value = resp.json().await.unwrap();
    let secret = generated["secret"].as_str().unwrap().to_string();
    let groups: Vec<&str> = secret.split('-').collect();
    assert_eq!(groups.len(), 4, "{secret}");
    assert!(groups.iter().all(|g| g.len() == 5
        && g.bytes()
            .all(|b| b"0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains(&b))));
    let settings = node.get_json("v1/settings").await.unwrap();
    assert_eq!(
        settings["lan_mesh"]["secret_set"], false,
        "asking saved nothing"
    );

    let (status, body) = node
        .put_json(
            "v1/settings",
            &json!({"lan_mesh": {"shared_secret": secret, "enabled": true}}),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    // Never returned: not by the PUT, not by a GET.
    for shown in [body, node.get_json("v1/settings").await.unwrap()] {
        assert!(shown["lan_mesh"].get("shared_secret").is_none(), "{shown}");
        assert_eq!(shown["lan_mesh"]["secret_set"], true);
        assert_eq!(shown["lan_mesh"]["open_lan"], false);
        assert!(!shown.to_string().contains(&secret));
    }
    let raw = node.get("v1/settings").await.unwrap().text().await.unwrap();
    assert!(!raw.contains(&secret));
    assert!(secret_warnings(&node).await.is_empty());

    // A change that does not mention the secret keeps it.
    let (status, _) = node
        .put_json(
            "v1/settings",
            &json!({"lan_mesh": {"display_name": "Front desk"}}),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let file: Value =
        serde_json::from_slice(&std::fs::read(settings_path(&node)).unwrap()).unwrap();
    assert_eq!(file["lan_mesh"]["shared_secret"], secret.as_str());

    // The open LAN with a secret still set is a contradiction; chosen with the secret
    // cleared, it is on, and the status says so.
    let (status, body) = node
        .put_json("v1/settings", &json!({"lan_mesh": {"open_lan": true}}))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "lan_mesh.open_lan");
    let (status, body) = node
        .put_json(
            "v1/settings",
            &json!({"lan_mesh": {"open_lan": true, "shared_secret": ""}}),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["lan_mesh"]["secret_set"], false);
    assert_eq!(secret_warnings(&node).await, ["open_lan"]);

    // A short secret an administrator wrote into the file still loads, with a warning.
    node.stop().await.unwrap();
    let mut file: Value =
        serde_json::from_slice(&std::fs::read(dir.join("settings.json")).unwrap()).unwrap();
    file["lan_mesh"]["shared_secret"] = json!("office");
    file["lan_mesh"]["open_lan"] = json!(false);
    std::fs::write(dir.join("settings.json"), file.to_string()).unwrap();
    let node = start(&dir).await;
    assert_eq!(
        node.get_json("v1/settings").await.unwrap()["lan_mesh"]["secret_set"],
        true
    );
    assert_eq!(secret_warnings(&node).await, ["weak_secret"]);
    assert!(!node.log().contains(&secret));
}

#[tokio::test]
async fn a_corrupt_settings_file_stops_the_start_and_is_left_untouched() {
    use_this_build();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    let node = start(&dir).await;
    let path = settings_path(&node);
    drop(node);

    let corrupt = "{\"lan_mesh\": {\"node_id\": \"01ARZ3NDEKTSV4RRFFQ69G5FAV\", ";
    std::fs::write(&path, corrupt).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lanchat"))
        .args(["serve", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("settings.json") && stderr.contains("not valid JSON"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), corrupt);

    let invalid = r#"{"lan_mesh": {"node_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "allowed_subnets": ["300.1.1.1"]}}"#;
    std::fs::write(&path, invalid).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lanchat"))
        .args(["serve", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("lan_mesh.allowed_subnets"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), invalid);
}

#[tokio::test]
async fn one_data_dir_serves_one_node_and_the_api_stays_on_loopback() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    let _node = start(&dir).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lanchat"))
        .args(["serve", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by another lanchat process"));

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lanchat"))
        .args(["serve", "--api-addr", "0.0.0.0:0", "--data-dir"])
        .arg(tmp.path().join("b"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}

#[tokio::test]
async fn the_ui_is_served_with_a_strict_content_security_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let node = start(&tmp.path().join("a")).await;
    let resp = node.http().get(&node.url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    let html = resp.text().await.unwrap();
    assert!(
        html.contains("<title>lanchat</title>"),
        "the built UI is embedded: {html}"
    );
    let js = node
        .http()
        .get(format!("{}ui.js", node.url))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), StatusCode::OK);
    assert!(js.headers()["content-type"]
        .to_str()
        .unwrap()
        .contains("javascript"));
    let plain = js.bytes().await.unwrap();

    // To a client that takes gzip, the same file compressed.
    let gz = node
        .http()
        .get(format!("{}ui.js", node.url))
        .header("accept-encoding", "gzip, deflate")
        .send()
        .await
        .unwrap();
    assert_eq!(gz.status(), StatusCode::OK);
    assert_eq!(gz.headers()["content-encoding"], "gzip");
    assert_eq!(gz.headers()["vary"], "accept-encoding");
    let compressed = gz.bytes().await.unwrap();
    assert!(
        compressed.len() < plain.len() / 2,
        "{} of {}",
        compressed.len(),
        plain.len()
    );
    let unzipped = std::process::Command::new("gzip")
        .arg("-dc")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(&compressed)?;
            child.wait_with_output()
        })
        .unwrap();
    assert_eq!(unzipped.stdout, plain.to_vec(), "the same bytes");
}

#[tokio::test]
async fn lanchat_serve_becomes_lanchat_node_which_maps_no_window_library_and_has_no_window() {
    let tmp = tempfile::tempdir().unwrap();
    let node = start(&tmp.path().join("a")).await;
    let pid = node.pid().expect("the node runs");
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(
        exe.file_name().and_then(|n| n.to_str()),
        Some("lanchat-node"),
        "`lanchat serve` should execute lanchat-node from beside itself (same process); \
         it runs {exe:?} — build the whole workspace (cargo build --workspace)"
    );
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let window_libs: Vec<&str> = maps
        .lines()
        .filter(|l| l.contains("libgtk") || l.contains("libwebkit"))
        .collect();
    assert!(window_libs.is_empty(), "{window_libs:?}");
    // The same node answers, under the process id whoever started `lanchat` holds.
    let status = node.get_json("v1/status").await.unwrap();
    assert!(status["node_id"].is_string(), "{status}");

    // Without a display there is no window to open, and it says what to run instead.
    let out = std::process::Command::new(&exe)
        .args(["window", "--data-dir"])
        .arg(tmp.path().join("b"))
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no display") && stderr.contains("lanchat serve"),
        "{stderr}"
    );

    // A window asked for on the data directory of this headless node: no second node,
    // and the node's own answer says why (nothing is opened, so no real display is
    // needed).
    let out = std::process::Command::new(lanchat_tests::lanchat_bin().unwrap())
        .args(["window", "--data-dir"])
        .arg(tmp.path().join("a"))
        .env("DISPLAY", ":9999")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("runs headless"), "{stderr}");
    let status = node.get_json("v1/status").await.unwrap();
    assert!(
        status["node_id"].is_string(),
        "the headless node runs on: {status}"
    );
}
