//! The chat part of the local API (contacts, conversations, messages, search, events)
//! on real `lanchat serve` processes, over real HTTP and WebSocket.
//!
//! Delivery between nodes is not part of this API: here a sent message is stored,
//! listed and queued (pending); what the transport does with it is tested elsewhere.

use std::time::Duration;

use futures_util::StreamExt;
use lanchat_tests::{wait_until, LoopbackPair, NodeProcess};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const LIMIT: Duration = Duration::from_secs(10);

fn use_this_build() {
    // Make the harness start the binary cargo built for this very test.
    std::env::set_var("LANCHAT_BIN", env!("CARGO_BIN_EXE_lanchat"));
}

/// A status and JSON body (`Null` for an empty one, e.g. 204).
async fn answer(resp: reqwest::Response) -> anyhow::Result<(StatusCode, Value)> {
    let status = resp.status();
    let text = resp.text().await?;
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)?
    };
    Ok((status, body))
}

async fn post(node: &NodeProcess, path: &str, body: &Value) -> anyhow::Result<(StatusCode, Value)> {
    answer(
        node.http()
            .post(node.api_url(path))
            .bearer_auth(&node.token)
            .json(body)
            .send()
            .await?,
    )
    .await
}

async fn post_empty(node: &NodeProcess, path: &str) -> anyhow::Result<(StatusCode, Value)> {
    answer(
        node.http()
            .post(node.api_url(path))
            .bearer_auth(&node.token)
            .send()
            .await?,
    )
    .await
}

async fn get(node: &NodeProcess, path: &str) -> anyhow::Result<(StatusCode, Value)> {
    answer(node.get(path).await?).await
}

async fn send(node: &NodeProcess, conversation: &str, text: &str) -> anyhow::Result<Value> {
    let (status, body) = post(
        node,
        &format!("v1/conversations/{conversation}/messages"),
        &json!({ "text": text }),
    )
    .await?;
    anyhow::ensure!(status == StatusCode::CREATED, "send: {status} {body}");
    Ok(body)
}

/// Asserts a JSON error: status, `code` and (for validation errors) `field`.
#[track_caller]
fn assert_error(
    (status, body): &(StatusCode, Value),
    want_status: u16,
    code: &str,
    field: Option<&str>,
) {
    assert_eq!(status.as_u16(), want_status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    match field {
        Some(f) => assert_eq!(body["field"], f, "{body}"),
        None => assert!(body.get("field").is_none(), "{body}"),
    }
}

type Events =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn events(node: &NodeProcess) -> anyhow::Result<Events> {
    let url = format!("{}api/v1/events", node.url.replacen("http://", "ws://", 1));
    let mut request = url.into_client_request()?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        format!("lanchat.v1, lanchat.bearer.{}", node.token).parse()?,
    );
    let (stream, _) = tokio_tungstenite::connect_async(request).await?;
    Ok(stream)
}

/// The next event of type `kind` (others are skipped), within LIMIT.
async fn next_event(events: &mut Events, kind: &str) -> anyhow::Result<Value> {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let frame = tokio::time::timeout_at(deadline, events.next()).await?;
        match frame {
            Some(Ok(Message::Text(text))) => {
                let event: Value = serde_json::from_str(&text)?;
                if event["type"] == kind {
                    return Ok(event);
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => anyhow::bail!("event stream failed: {e}"),
            None => anyhow::bail!("event stream ended waiting for {kind}"),
        }
    }
}

fn ids(messages: &Value) -> Vec<String> {
    messages
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|m| m["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn messages_are_sent_listed_paged_searched_and_retried() -> anyhow::Result<()> {
    use_this_build();
    let mut p = LoopbackPair::start("office", "office").await?;
    let (a, b_id, a_id) = (&p.a, p.b_id.as_str(), p.a_id.as_str());
    let dm = format!("dm:lan:{b_id}");
    wait_until(LIMIT, "b online in a's contacts", || async {
        let (_, contacts) = get(a, "v1/contacts").await.ok()?;
        contacts
            .as_array()?
            .iter()
            .any(|c| c["peer_id"] == b_id && c["online"] == true)
            .then_some(())
    })
    .await?;

    // Contacts: the local user first, then the peer, with its DM's id.
    let (status, contacts) = get(a, "v1/contacts").await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(contacts[0]["is_self"], true, "{contacts}");
    assert_eq!(contacts[0]["peer_id"], a_id);
    assert_eq!(contacts[0]["user_id"], format!("lan:{a_id}"));
    assert_eq!(contacts[0]["display_name"], "alpha");
    let bravo = &contacts[1];
    assert_eq!(bravo["is_self"], false);
    assert_eq!(bravo["user_id"], format!("lan:{b_id}"));
    assert_eq!(bravo["display_name"], "bravo");
    assert_eq!(bravo["conversation_id"], dm.as_str());
    assert_eq!(bravo["blocked"], false);
    assert!(bravo["address"]
        .as_str()
        .is_some_and(|s| s.starts_with("127.0.0.1:")));

    // B goes away (a clean stop): A keeps it as a known, offline contact, and what A
    // sends stays queued. This test is about what the API promises; delivery itself is
    // tested in tests/tests/dm_loopback.rs.
    p.b.stop().await?;
    wait_until(LIMIT, "b offline in a's contacts", || async {
        let (_, contacts) = get(a, "v1/contacts").await.ok()?;
        contacts
            .as_array()?
            .iter()
            .any(|c| c["peer_id"] == b_id && c["online"] == false)
            .then_some(())
    })
    .await?;

    // A DM can be read (and marked read) before its first message.
    let (status, page) = get(a, &format!("v1/conversations/{dm}/messages")).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page, json!({"messages": [], "older": null}));
    let (status, _) = post_empty(a, &format!("v1/conversations/{dm}/read")).await?;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let mut stream = events(a).await?;
    let first = send(a, &dm, "  hello bravo\n\n  second line\n").await?;
    assert_eq!(first["status"], "pending");
    assert_eq!(first["outgoing"], true);
    assert_eq!(first["conversation_id"], dm.as_str());
    assert_eq!(first["sender"], format!("lan:{a_id}"));
    assert_eq!(first["sender_name"], "alpha");
    assert_eq!(
        first["text"], "hello bravo\n\n  second line",
        "outer whitespace trimmed, inner kept"
    );
    assert!(first["sent_at"].as_u64().is_some_and(|t| t > 0));
    let announced = next_event(&mut stream, "message.new").await?;
    assert_eq!(announced["message"], first);

    // Seven messages; pages of three, newest last, going back with `older`.
    let mut sent = vec![first];
    for i in 2..=7 {
        sent.push(send(a, &dm, &format!("message number {i}")).await?);
    }
    let all: Vec<String> = sent
        .iter()
        .filter_map(|m| m["id"].as_str().map(str::to_string))
        .collect();
    let (_, whole) = get(a, &format!("v1/conversations/{dm}/messages")).await?;
    assert_eq!(
        ids(&whole["messages"]),
        all,
        "oldest first, in sending order"
    );
    assert_eq!(whole["older"], Value::Null);
    let orders: Vec<&str> = whole["messages"]
        .as_array()
        .map(|m| m.iter().filter_map(|m| m["order"].as_str()).collect())
        .unwrap_or_default();
    assert!(orders.windows(2).all(|w| w[0] < w[1]), "{orders:?}");

    let mut pages = Vec::new();
    let mut path = format!("v1/conversations/{dm}/messages?limit=3");
    loop {
        let (status, page) = get(a, &path).await?;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages.push(ids(&page["messages"]));
        match page["older"].as_str() {
            Some(older) => path = format!("v1/conversations/{dm}/messages?limit=3&before={older}"),
            None => break,
        }
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
    let stitched: Vec<String> = pages.into_iter().rev().flatten().collect();
    assert_eq!(stitched, all, "pages neither overlap nor leave gaps");

    // The conversation list: last message, nothing unread (all ours).
    let (_, conversations) = get(a, "v1/conversations").await?;
    let conv = conversations
        .as_array()
        .and_then(|l| l.iter().find(|c| c["id"] == dm.as_str()))
        .cloned()
        .unwrap_or_default();
    assert_eq!(conv["kind"], "dm", "{conversations}");
    assert_eq!(conv["name"], "bravo");
    assert_eq!(conv["peer_id"], b_id);
    assert_eq!(conv["unread"], 0);
    // Its status may have moved on (the transport delivers it meanwhile).
    assert_eq!(conv["last_message"]["id"], sent[6]["id"]);
    assert_eq!(conv["last_message"]["text"], sent[6]["text"]);
    assert!(conv["last_activity_at"].as_u64().is_some_and(|t| t > 0));

    let (status, _) = post_empty(a, &format!("v1/conversations/{dm}/read")).await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let read = next_event(&mut stream, "conversation.read").await?;
    assert_eq!(read["conversation_id"], dm.as_str());

    // Search: Chinese through the trigram index, English case-insensitively, a
    // one-character term by scanning, pages newest first.
    let chinese = send(a, &dm, "今天下午开会，别迟到").await?;
    let english = send(a, &dm, "The Quarterly REPORT is ready").await?;
    let (status, found) = get(a, "v1/search?q=下午开会").await?;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(ids(&found["hits"]), [chinese["id"].as_str().unwrap_or("")]);
    assert_eq!(found["hits"][0]["sender_name"], "alpha");
    let (_, found) = get(a, "v1/search?q=quarterly%20report").await?;
    assert_eq!(ids(&found["hits"]), [english["id"].as_str().unwrap_or("")]);
    let (_, found) = get(a, "v1/search?q=会").await?;
    assert_eq!(ids(&found["hits"]), [chinese["id"].as_str().unwrap_or("")]);
    let (_, first_page) = get(a, "v1/search?q=message%20number&limit=4").await?;
    let cursor = first_page["next"].as_str().unwrap_or("").to_string();
    assert!(!cursor.is_empty(), "{first_page}");
    let (_, second_page) = get(a, &format!("v1/search?q=message%20number&after={cursor}")).await?;
    assert_eq!(second_page["next"], Value::Null);
    let mut newest_first: Vec<String> = all[1..].to_vec();
    newest_first.reverse();
    let searched: Vec<String> = ids(&first_page["hits"])
        .into_iter()
        .chain(ids(&second_page["hits"]))
        .collect();
    assert_eq!(searched, newest_first);

    // Retry: only a failed message. Pending → 409.
    let last_id = english["id"].as_str().unwrap_or("");
    let retry_path = format!("v1/conversations/{dm}/messages/{last_id}/retry");
    assert_error(&post_empty(a, &retry_path).await?, 409, "not_failed", None);
    assert_error(
        &post_empty(
            a,
            &format!(
                "v1/conversations/{dm}/messages/{}/retry",
                storage::MessageId::new()
            ),
        )
        .await?,
        404,
        "not_found",
        None,
    );
    assert_error(
        &post_empty(a, &format!("v1/conversations/{dm}/messages/nope/retry")).await?,
        400,
        "invalid_field",
        Some("message_id"),
    );

    // Blocking b fails what was queued for it and refuses new messages…
    let (status, _) = post_empty(a, &format!("v1/peers/{b_id}/block")).await?;
    assert_eq!(status, StatusCode::OK);
    // Every client hears that the dropped queue's messages failed: all of them, since b
    // has been away the whole time.
    let (_, queued) = get(a, &format!("v1/conversations/{dm}/messages")).await?;
    let queued = ids(&queued["messages"]);
    let mut failed = Vec::new();
    for _ in 0..queued.len() {
        let event = next_event(&mut stream, "message.status").await?;
        assert_eq!(event["status"], "failed", "{event}");
        assert_eq!(event["conversation_id"], dm.as_str());
        failed.extend(event["message_id"].as_str().map(str::to_string));
    }
    failed.sort();
    let mut expected = queued.clone();
    expected.sort();
    assert_eq!(failed, expected);
    assert_error(
        &post(
            a,
            &format!("v1/conversations/{dm}/messages"),
            &json!({"text": "hi"}),
        )
        .await?,
        403,
        "peer_blocked",
        None,
    );
    let (_, page) = get(a, &format!("v1/conversations/{dm}/messages?limit=1")).await?;
    assert_eq!(page["messages"][0]["status"], "failed", "{page}");
    let (_, contacts) = get(a, "v1/contacts").await?;
    assert!(
        contacts
            .as_array()
            .is_some_and(|l| l.iter().all(|c| c["peer_id"] != b_id)),
        "blocked contacts are hidden: {contacts}"
    );
    let (_, contacts) = get(a, "v1/contacts?include_blocked=true").await?;
    assert!(contacts.as_array().is_some_and(|l| l
        .iter()
        .any(|c| c["peer_id"] == b_id && c["blocked"] == true)));
    // …and while blocked, a failed message cannot be queued again.
    assert_error(
        &post_empty(a, &retry_path).await?,
        403,
        "peer_blocked",
        None,
    );

    // After unblocking, the failed message is queued again under the same id.
    let (status, _) = post_empty(a, &format!("v1/peers/{b_id}/unblock")).await?;
    assert_eq!(status, StatusCode::OK);
    let (status, retried) = post_empty(a, &retry_path).await?;
    assert_eq!(status, StatusCode::OK, "{retried}");
    assert_eq!(retried["id"], last_id);
    assert_eq!(retried["status"], "pending");
    assert_eq!(retried["order"], english["order"], "keeps its place");
    let changed = next_event(&mut stream, "message.status").await?;
    assert_eq!(changed["message_id"], last_id);
    assert_eq!(changed["conversation_id"], dm.as_str());
    assert_eq!(changed["status"], "pending");
    let (_, page) = get(a, &format!("v1/conversations/{dm}/messages?limit=1")).await?;
    assert_eq!(page["messages"][0]["status"], "pending");
    Ok(())
}

#[tokio::test]
async fn bad_chat_requests_get_clear_errors() -> anyhow::Result<()> {
    use_this_build();
    let tmp = tempfile::tempdir()?;
    let node = NodeProcess::serve(&tmp.path().join("a")).await?;
    let node = &node;
    let status = node.get_json("v1/status").await?;
    let own_id = status["node_id"].as_str().unwrap_or("").to_string();
    let stranger = storage::MessageId::new().to_string();
    let dm = format!("dm:lan:{stranger}");
    let group = format!("group:{}", storage::MessageId::new());

    // Alone, with the mesh off: only the local user, offline.
    let (_, contacts) = get(node, "v1/contacts").await?;
    assert_eq!(contacts.as_array().map(Vec::len), Some(1), "{contacts}");
    assert_eq!(contacts[0]["is_self"], true);
    assert_eq!(contacts[0]["online"], false);
    assert_eq!(contacts[0]["peer_id"], own_id.as_str());
    assert_eq!(contacts[0]["display_name"], status["display_name"]);
    assert_error(
        &get(node, "v1/contacts?include_blocked=maybe").await?,
        400,
        "invalid_field",
        Some("include_blocked"),
    );
    let (status, list) = get(node, "v1/conversations").await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list, json!([]));

    // Ids that do not parse.
    for bad in [
        "nope",
        "dm:lan:123",
        "group:xyz",
        "dm:01ARZ3NDEKTSV4RRFFQ69G5FAV",
    ] {
        assert_error(
            &get(node, &format!("v1/conversations/{bad}/messages")).await?,
            400,
            "invalid_field",
            Some("conversation_id"),
        );
        assert_error(
            &post(
                node,
                &format!("v1/conversations/{bad}/messages"),
                &json!({"text": "hi"}),
            )
            .await?,
            400,
            "invalid_field",
            Some("conversation_id"),
        );
        assert_error(
            &post_empty(node, &format!("v1/conversations/{bad}/read")).await?,
            400,
            "invalid_field",
            Some("conversation_id"),
        );
    }
    // A DM with a peer nobody knows: an empty page, but nobody to send to.
    let (status, page) = get(node, &format!("v1/conversations/{dm}/messages")).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["messages"], json!([]));
    assert_error(
        &post(
            node,
            &format!("v1/conversations/{dm}/messages"),
            &json!({"text": "hi"}),
        )
        .await?,
        404,
        "not_found",
        None,
    );
    // An unknown group is not there at all.
    assert_error(
        &get(node, &format!("v1/conversations/{group}/messages")).await?,
        404,
        "not_found",
        None,
    );
    assert_error(
        &post(
            node,
            &format!("v1/conversations/{group}/messages"),
            &json!({"text": "hi"}),
        )
        .await?,
        404,
        "not_found",
        None,
    );
    assert_error(
        &post_empty(node, &format!("v1/conversations/{group}/read")).await?,
        404,
        "not_found",
        None,
    );
    // Not to itself.
    assert_error(
        &post(
            node,
            &format!("v1/conversations/dm:lan:{own_id}/messages"),
            &json!({"text": "hi"}),
        )
        .await?,
        400,
        "invalid_field",
        Some("conversation_id"),
    );

    // Texts: empty, blank, too long (a 400 naming the field, not a bare 413), wrong
    // shape, wrong content type.
    let messages = format!("v1/conversations/{dm}/messages");
    for text in ["", " ", " \n\t\n "] {
        assert_error(
            &post(node, &messages, &json!({ "text": text })).await?,
            400,
            "invalid_field",
            Some("text"),
        );
    }
    let too_long = "a".repeat(storage::MAX_BODY_BYTES + 1);
    assert_error(
        &post(node, &messages, &json!({ "text": too_long })).await?,
        400,
        "invalid_field",
        Some("text"),
    );
    let too_long = "字".repeat(storage::MAX_BODY_BYTES / 3 + 1);
    assert_error(
        &post(node, &messages, &json!({ "text": too_long })).await?,
        400,
        "invalid_field",
        Some("text"),
    );
    assert_error(
        &post(node, &messages, &json!({ "body": "hi" })).await?,
        400,
        "bad_request",
        None,
    );
    assert_error(
        &post(node, &messages, &json!({ "text": 5 })).await?,
        400,
        "bad_request",
        None,
    );
    let (status, body) = answer(
        node.http()
            .post(node.api_url(&messages))
            .bearer_auth(&node.token)
            .header("Content-Type", "text/plain")
            .body("hi")
            .send()
            .await?,
    )
    .await?;
    assert_error(&(status, body), 415, "unsupported_media_type", None);

    // Paging and search parameters.
    for (query, field) in [
        ("before=12", "before"),
        ("before=", "before"),
        ("before=0000000000000001-nope", "before"),
        ("limit=0", "limit"),
        ("limit=ten", "limit"),
        ("limit=-1", "limit"),
    ] {
        assert_error(
            &get(node, &format!("{messages}?{query}")).await?,
            400,
            "invalid_field",
            Some(field),
        );
    }
    for (query, field) in [
        ("", "q"),
        ("?q=", "q"),
        ("?q=%20%20", "q"),
        ("?q=hello&after=x", "after"),
        ("?q=hello&after=-3", "after"),
        ("?q=hello&limit=0", "limit"),
    ] {
        assert_error(
            &get(node, &format!("v1/search{query}")).await?,
            400,
            "invalid_field",
            Some(field),
        );
    }
    let (status, found) = get(node, "v1/search?q=nothing%20here").await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found, json!({"hits": [], "next": null}));

    // A blocked peer: refused with its own code, and hidden from contacts.
    let (status, _) = post_empty(node, &format!("v1/peers/{stranger}/block")).await?;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        &post(node, &messages, &json!({"text": "hi"})).await?,
        403,
        "peer_blocked",
        None,
    );
    let (_, contacts) = get(node, "v1/contacts").await?;
    assert_eq!(contacts.as_array().map(Vec::len), Some(1), "{contacts}");
    let (_, contacts) = get(node, "v1/contacts?include_blocked=true").await?;
    assert_eq!(contacts[1]["peer_id"], stranger.as_str(), "{contacts}");
    assert_eq!(contacts[1]["blocked"], true);
    assert_eq!(contacts[1]["online"], false);
    assert_eq!(
        contacts[1]["display_name"],
        stranger.as_str(),
        "a peer without a name shows its id"
    );

    // A block written through the settings is the same block (one list, no second
    // place to keep in step), and lifting it there lifts it everywhere.
    let (status, _) = post_empty(node, &format!("v1/peers/{stranger}/unblock")).await?;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = post(node, &messages, &json!({"text": "unblocked"})).await?;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = put(
        node,
        "v1/settings",
        &json!({"lan_mesh": {"blocked_peers": [stranger.as_str()]}}),
    )
    .await?;
    assert_eq!(status, StatusCode::OK);
    wait_until(
        Duration::from_secs(5),
        "the settings' block in force",
        || async {
            let (status, body) = post(node, &messages, &json!({"text": "hi"})).await.ok()?;
            (status == StatusCode::FORBIDDEN && body["code"] == "peer_blocked").then_some(())
        },
    )
    .await?;
    let (_, contacts) = get(node, "v1/contacts?include_blocked=true").await?;
    assert_eq!(contacts[1]["blocked"], true, "{contacts}");
    let (status, _) = put(
        node,
        "v1/settings",
        &json!({"lan_mesh": {"blocked_peers": []}}),
    )
    .await?;
    assert_eq!(status, StatusCode::OK);
    wait_until(
        Duration::from_secs(5),
        "the block lifted by the settings",
        || async {
            let (status, _) = post(node, &messages, &json!({"text": "again"}))
                .await
                .ok()?;
            (status == StatusCode::CREATED).then_some(())
        },
    )
    .await?;

    // Nothing above broke the node.
    let (status, _) = get(node, "v1/status").await?;
    assert_eq!(status, StatusCode::OK);
    Ok(())
}

async fn put(node: &NodeProcess, path: &str, body: &Value) -> anyhow::Result<(StatusCode, Value)> {
    answer(
        node.http()
            .put(node.api_url(path))
            .bearer_auth(&node.token)
            .json(body)
            .send()
            .await?,
    )
    .await
}

/// Groups on one node (no mesh): created, listed, read, changed, with `group.updated`
/// on the event stream; messages go through the group's conversation; bad input gets a
/// 400 naming the field, unknown groups a 404.
#[tokio::test]
async fn groups_are_created_changed_and_refused_with_clear_errors() -> anyhow::Result<()> {
    use_this_build();
    let tmp = tempfile::tempdir()?;
    let node = NodeProcess::serve(&tmp.path().join("a")).await?;
    let node = &node;
    let own_id = node.get_json("v1/status").await?["node_id"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let other = storage::MessageId::new().to_string();
    let mut stream = events(node).await?;

    let (status, group) = post(
        node,
        "v1/groups",
        &json!({"name": "  Team 小组 ", "members": [other, own_id], "announcement": "hi"}),
    )
    .await?;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    let id = group["id"].as_str().unwrap_or("").to_string();
    assert_eq!(group["conversation_id"], format!("group:{id}"));
    assert_eq!(group["name"], "Team 小组");
    assert_eq!(group["announcement"], "hi");
    assert_eq!(group["owner"], own_id.as_str());
    let first_revision = group["revision"].as_u64().unwrap_or(0);
    assert!(first_revision > 0, "{group}");
    assert_eq!(group["revision_editor"], own_id.as_str());
    assert_eq!(group["is_member"], true);
    assert_eq!(group["dissolved"], false);
    assert_eq!(
        group["permissions"],
        json!({"send": true, "edit_info": true, "manage_members": true, "leave": false,
               "dissolve": true})
    );
    assert_eq!(
        group["members"].as_array().map(Vec::len),
        Some(2),
        "{group}"
    );
    let event = next_event(&mut stream, "group.updated").await?;
    assert_eq!(event["group"]["id"], id.as_str());

    let (_, list) = get(node, "v1/groups").await?;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    let (status, one) = get(node, &format!("v1/groups/{id}")).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one, group);

    let (status, changed) = put(
        node,
        &format!("v1/groups/{id}"),
        &json!({"announcement": "周五发布", "members": []}),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["name"], "Team 小组");
    assert_eq!(changed["announcement"], "周五发布");
    assert!(changed["revision"].as_u64().unwrap_or(0) > first_revision);
    assert_eq!(
        changed["members"].as_array().map(Vec::len),
        Some(1),
        "{changed}"
    );
    let event = next_event(&mut stream, "group.updated").await?;
    assert_eq!(event["group"]["revision"], changed["revision"]);
    let event = next_event(&mut stream, "group.announcement").await?;
    assert_eq!(event["group_id"], id.as_str());
    assert_eq!(event["announcement"], "周五发布");
    assert_eq!(event["editor"], own_id.as_str());

    let sent = send(node, &format!("group:{id}"), "hello group").await?;
    assert_eq!(sent["conversation_id"], format!("group:{id}"));
    let (_, conversations) = get(node, "v1/conversations").await?;
    assert_eq!(conversations[0]["kind"], "group", "{conversations}");
    assert_eq!(conversations[0]["name"], "Team 小组");

    // Bad input.
    for (body, field) in [
        (json!({"name": " ", "members": []}), "name"),
        (json!({"name": "x".repeat(129), "members": []}), "name"),
        (json!({"name": "a", "members": ["nope"]}), "members"),
        (
            json!({"name": "a", "members": [], "announcement": "a".repeat(4097)}),
            "announcement",
        ),
    ] {
        assert_error(
            &post(node, "v1/groups", &body).await?,
            400,
            "invalid_field",
            Some(field),
        );
    }
    let (status, _) = post(
        node,
        "v1/groups",
        &json!({"name": "a", "members": [], "x": 1}),
    )
    .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(
        &get(node, "v1/groups/nope").await?,
        400,
        "invalid_field",
        Some("group_id"),
    );
    let unknown = storage::MessageId::new();
    assert_error(
        &get(node, &format!("v1/groups/{unknown}")).await?,
        404,
        "not_found",
        None,
    );
    assert_error(
        &put(node, &format!("v1/groups/{unknown}"), &json!({"name": "b"})).await?,
        404,
        "not_found",
        None,
    );
    assert_error(
        &put(node, &format!("v1/groups/{id}"), &json!({})).await?,
        400,
        "invalid_field",
        Some("name"),
    );

    // The owner cannot leave; it dissolves, and then nobody sends or changes anything.
    assert_error(
        &post_empty(node, &format!("v1/groups/{id}/leave")).await?,
        400,
        "invalid_field",
        Some("group"),
    );
    let (status, dissolved) = post_empty(node, &format!("v1/groups/{id}/dissolve")).await?;
    assert_eq!(status, StatusCode::OK, "{dissolved}");
    assert_eq!(dissolved["dissolved"], true);
    assert_eq!(dissolved["permissions"]["send"], false);
    assert_eq!(dissolved["permissions"]["edit_info"], false);
    assert_error(
        &post(
            node,
            &format!("v1/conversations/group:{id}/messages"),
            &json!({"text": "x"}),
        )
        .await?,
        400,
        "invalid_field",
        Some("conversation_id"),
    );
    assert_error(
        &put(node, &format!("v1/groups/{id}"), &json!({"name": "again"})).await?,
        400,
        "invalid_field",
        Some("group"),
    );
    assert_error(
        &post_empty(node, &format!("v1/groups/{unknown}/dissolve")).await?,
        404,
        "not_found",
        None,
    );
    // History stays readable.
    let (status, page) = get(node, &format!("v1/conversations/group:{id}/messages")).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["messages"][0]["text"], "hello group", "{page}");

    // Invitations: none here; unknown ones are 404, bad ids name the field.
    let (status, list) = get(node, "v1/group-invitations").await?;
    assert_eq!((status, list), (StatusCode::OK, json!([])));
    assert_error(
        &post_empty(node, &format!("v1/group-invitations/{unknown}/accept")).await?,
        404,
        "not_found",
        None,
    );
    assert_error(
        &post_empty(node, "v1/group-invitations/nope/decline").await?,
        400,
        "invalid_field",
        Some("group_id"),
    );
    Ok(())
}
