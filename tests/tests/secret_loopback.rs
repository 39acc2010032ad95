//! The shared secret between real `lanchat serve` processes on loopback (issue 15,
//! "The secret"; docs/PROTOCOL.md, "The shared secret" and "Handshake").
//!
//! A node with another secret never lists a node of the office, in either direction;
//! and when something without the secret dials the office node's LAN port with the real
//! handshake (the node's own `Handshake`, proving the outsider's secret — a real node
//! would never dial a peer discovery does not list), the node refuses it at message 1,
//! counts it (`handshake_failed`) and the dialler learns no identity. The same dial with
//! the office's secret learns the node's id: the refusal is the secret's doing.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use lanchat_tests::attacker::who_answers;
use lanchat_tests::{holds_until, wait_until, NodeProcess, PairPlan, Side};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(10);
/// Generated secrets (`POST /api/v1/settings/secret`), as an office would use.
const OFFICE: &str = "PK3RT-9WQ2M-HX7VD-C4N8F";
const OUTSIDER: &str = "ZB8QN-4KT7R-MW2XC-9HJ6P";

async fn counter(node: &NodeProcess, plane: &str, name: &str) -> anyhow::Result<u64> {
    let status = node.get_json("v1/status").await?;
    status[plane][name]
        .as_u64()
        .with_context(|| format!("no {plane} counter {name:?} in {status}"))
}

async fn lists(node: &NodeProcess, id: &str) -> anyhow::Result<Option<Value>> {
    let peers = node.get_json("v1/peers?include_blocked=true").await?;
    Ok(peers
        .as_array()
        .and_then(|all| all.iter().find(|p| p["peer_id"] == id).cloned()))
}

#[tokio::test]
async fn a_node_without_the_secret_learns_no_identity_and_is_refused() -> anyhow::Result<()> {
    let plan = PairPlan::new(OFFICE, OUTSIDER)?;
    let a_addr = SocketAddr::from(([127, 0, 0, 1], plan.listen_port(Side::A)?));
    let p = plan.start().await?;
    p.explain(
        wait_until(LIMIT, "a's mesh runs", || async {
            let status = p.a.get_json("v1/status").await.ok()?;
            (status["mesh_state"] == "running" && status["transport"].is_object()).then_some(())
        })
        .await,
    )?;

    // The outsider dials the office node with its own secret: refused, counted, and
    // nothing of the node's identity comes back.
    let before = counter(&p.a, "transport", "handshake_failed").await?;
    let learned = who_answers(a_addr, OUTSIDER).await?;
    let refusal = match learned {
        Ok(id) => anyhow::bail!("the outsider learned the node's id {id}"),
        Err(why) => why,
    };
    assert!(refusal.starts_with("no message 2"), "{refusal}");
    assert!(!refusal.contains(&p.a_id), "{refusal}");
    p.explain(
        wait_until(LIMIT, "a counts the refused handshake", || async {
            let now = counter(&p.a, "transport", "handshake_failed").await.ok()?;
            (now > before).then_some(())
        })
        .await,
    )?;

    // The real outsider node and the office node never list each other, until each
    // has dropped several of the other's discovery packets for their tag.
    let (a_id, b_id) = (p.a_id.clone(), p.b_id.clone());
    p.explain(
        holds_until(
            LIMIT,
            "neither lists the other",
            || async {
                if let Some(b) = lists(&p.a, &b_id).await? {
                    return Ok(Err(format!("a lists b: {b}")));
                }
                if let Some(a) = lists(&p.b, &a_id).await? {
                    return Ok(Err(format!("b lists a: {a}")));
                }
                Ok(Ok(()))
            },
            || async {
                Ok(counter(&p.a, "discovery", "bad_tag").await? >= 3
                    && counter(&p.b, "discovery", "bad_tag").await? >= 3)
            },
        )
        .await,
    )?;
    assert_eq!(counter(&p.a, "transport", "links_accepted").await?, 0);
    assert_eq!(counter(&p.b, "transport", "links_dialled").await?, 0);

    // The same dial proving the office's secret is answered: the node proves its id.
    let learned = who_answers(a_addr, OFFICE).await?;
    assert_eq!(learned.map(|id| id.to_string()), Ok(p.a_id.clone()));
    Ok(())
}
