//! The attacker of `tests/tests/lan_floods.rs` (issue 16, "Floods, tested"): run inside an
//! attacker's namespace host (`NetNs::command`), it floods one node and prints one JSON
//! line saying what it sent and how fast.
//!
//! ```text
//! flood udp --to IP:PORT --from IP[,IP…] --secs S --max N [--threads T]
//!           [--broadcast IP --broadcast-every K]
//!     Forged discovery datagrams in a tight `send_to` loop over a pre-built set: random
//!     bytes, packets with a wrong tag and random node ids, untagged and oversized ones.
//!     Each thread sends from every `--from` address in turn; every K-th datagram goes to
//!     the broadcast address instead of `--to`.
//! flood insider --to IP:PORT --secret SECRET --paced-from IP[,IP…] --per-ip R
//!           [--burst-from IP] --secs S --max N --hold-port P
//!     VALID discovery packets (the real codec and the real key of SECRET), each with a
//!     fresh random node id: R a second from each paced address (just under the node's
//!     per-IP limit), and from the burst address as fast as one thread sends. Every
//!     packet announces link port P, where this tool holds a TCP listener that never
//!     accepts: the node's dials to the made-up ids hang until their timeout.
//! flood tcp --to IP:PORT --from IP[,IP…] --conns N --secs S --max-attempts M
//!           [--hold-retry-ms H] [--churn-retry-ms C] [--only churn]
//!     N connections per address to the node's link port, each reconnecting when the node
//!     closes it (after H ms, or C ms for the churners): most stay silent, some send an
//!     HTTP upgrade one byte every 500 ms, some complete the WebSocket upgrade and stall,
//!     one in ten sends a bad request at once (a handshake that fails fast, so the
//!     node's per-IP handshake rate is what stops it). `--only churn`: all of them do.
//! ```
//!
//! Every loop is bounded by `--secs` and by a count, and the tool exits by itself.
//! Destinations must be on the test LAN (198.51.100.0/24) or loopback: it refuses any
//! other address.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use api_types::{NodeId, Presence};
use lan_mesh::discovery::{
    DiscoveryKey, InstanceId, Nonce, Packet, PacketKind, PublicKey, UnixMillis,
};
use lan_mesh::secret::SharedSecret;
use lan_mesh::transport::config::LINK_PATH;
use rand::{RngCore, SeedableRng};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Pre-built datagrams the UDP flood cycles through.
const UDP_SET: usize = 4096;
/// Valid packets the insider's burst thread cycles through (each a fresh id).
const INSIDER_SET: usize = 50_000;
/// How often a sending loop looks at the clock and its count.
const CHECK_EVERY: u64 = 256;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = Opts::parse(&args[1.min(args.len())..])?;
    let report = match args.first().map(String::as_str) {
        Some("udp") => udp(&opts)?,
        Some("insider") => insider(&opts)?,
        Some("tcp") => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(tcp(&opts))?,
        other => bail!("flood udp|insider|tcp …, not {other:?}"),
    };
    println!("{report}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Options

#[derive(Debug, Default)]
struct Opts {
    to: Option<SocketAddr>,
    from: Vec<Ipv4Addr>,
    secs: f64,
    max: u64,
    threads: usize,
    broadcast: Option<Ipv4Addr>,
    broadcast_every: u64,
    secret: String,
    per_ip: u32,
    burst_from: Option<Ipv4Addr>,
    hold_port: u16,
    conns: usize,
    hold_retry: Duration,
    churn_retry: Duration,
    only_churn: bool,
}

impl Opts {
    fn parse(args: &[String]) -> anyhow::Result<Opts> {
        let mut o = Opts {
            secs: 20.0,
            max: 5_000_000,
            threads: 1,
            hold_retry: Duration::from_millis(1000),
            churn_retry: Duration::from_millis(100),
            ..Opts::default()
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let v = it.next().with_context(|| format!("{flag} needs a value"))?;
            let ips = |v: &str| -> anyhow::Result<Vec<Ipv4Addr>> {
                v.split(',')
                    .map(|s| Ipv4Addr::from_str(s).with_context(|| format!("{flag} {s}")))
                    .collect()
            };
            match flag.as_str() {
                "--to" => o.to = Some(v.parse().context("--to")?),
                "--from" | "--paced-from" => o.from = ips(v)?,
                "--secs" => o.secs = v.parse().context("--secs")?,
                "--max" | "--max-attempts" => o.max = v.parse().context("--max")?,
                "--threads" => o.threads = v.parse().context("--threads")?,
                "--broadcast" => o.broadcast = Some(v.parse().context("--broadcast")?),
                "--broadcast-every" => o.broadcast_every = v.parse().context("--every")?,
                "--secret" => o.secret.clone_from(v),
                "--per-ip" => o.per_ip = v.parse().context("--per-ip")?,
                "--burst-from" => o.burst_from = Some(v.parse().context("--burst-from")?),
                "--hold-port" => o.hold_port = v.parse().context("--hold-port")?,
                "--conns" => o.conns = v.parse().context("--conns")?,
                "--hold-retry-ms" => o.hold_retry = Duration::from_millis(v.parse()?),
                "--churn-retry-ms" => o.churn_retry = Duration::from_millis(v.parse()?),
                "--only" if v == "churn" => o.only_churn = true,
                _ => bail!("unknown option {flag}"),
            }
        }
        anyhow::ensure!(
            o.secs > 0.0 && o.secs <= 60.0,
            "--secs must be in (0, 60]: a flood stops by itself"
        );
        anyhow::ensure!(o.max > 0, "--max must be positive");
        anyhow::ensure!((1..=4).contains(&o.threads), "--threads 1..=4");
        if let Some(to) = o.to {
            check_destination(to.ip())?;
        }
        if let Some(b) = o.broadcast {
            check_destination(IpAddr::V4(b))?;
        }
        Ok(o)
    }

    fn to(&self) -> anyhow::Result<SocketAddr> {
        self.to.context("--to is required")
    }

    fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.secs)
    }
}

/// The hard rule of the test LANs: traffic goes to their own hosts or to loopback only.
fn check_destination(ip: IpAddr) -> anyhow::Result<()> {
    let ok = match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.octets()[..3] == [198, 51, 100],
        IpAddr::V6(v6) => v6.is_loopback(),
    };
    if !ok {
        bail!("{ip} is neither on the test LAN 198.51.100.0/24 nor loopback: refusing");
    }
    Ok(())
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn rate(count: u64, took: Duration) -> f64 {
    (count as f64 / took.as_secs_f64().max(1e-9)).round()
}

// ---------------------------------------------------------------------------------------
// Discovery packets

/// A well-formed packet from a fresh random node id (a random ULID: discovery does not
/// compare ids with keys, docs/PROTOCOL.md "Limits"), tagged with `key` (or untagged).
fn packet(
    rng: &mut impl RngCore,
    n: u64,
    listen_port: u16,
    key: Option<&DiscoveryKey>,
) -> anyhow::Result<Vec<u8>> {
    let id = ulid::Ulid::from_parts(unix_ms(), u128::from(rng.next_u64()) << 16);
    let node_id = NodeId::from_str(&id.to_string()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut pk = [0u8; 32];
    rng.fill_bytes(&mut pk);
    let p = Packet {
        kind: PacketKind::Heartbeat,
        node_id,
        instance_id: InstanceId(rng.next_u64()),
        ts: UnixMillis(unix_ms()),
        nonce: Nonce((u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64())),
        listen_port,
        display_name: format!("fake-{n}"),
        public_key: Some(PublicKey(pk)),
        seq: Some(1),
        presence: Some(Presence::Online),
    };
    Ok(p.encode(key)?)
}

/// The UDP flood's set: a quarter each of random bytes, packets tagged with a wrong
/// key, untagged packets, and broken ones (truncated headers, oversized, garbage after
/// a valid header). All are dropped by the node; before decoding, once a source is
/// over its rate.
fn hostile_set(rng: &mut impl RngCore, n: usize) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut wrong = [0u8; 32];
    rng.fill_bytes(&mut wrong);
    let wrong = DiscoveryKey::from_bytes(wrong);
    let mut set = Vec::with_capacity(n);
    for i in 0..n {
        let d = match i % 4 {
            0 => {
                let len = 16 + (rng.next_u32() as usize % 1100);
                let mut b = vec![0u8; len];
                rng.fill_bytes(&mut b);
                b
            }
            1 => packet(rng, i as u64, 19123, Some(&wrong))?,
            2 => packet(rng, i as u64, 19123, None)?,
            _ => {
                let mut b = packet(rng, i as u64, 19123, Some(&wrong))?;
                match (i / 4) % 3 {
                    0 => b.truncate(12),
                    1 => b.resize(1300, 0xee),
                    _ => {
                        let len = b.len();
                        rng.fill_bytes(&mut b[20..len]);
                    }
                }
                b
            }
        };
        set.push(d);
    }
    Ok(set)
}

/// Sends `set` round-robin from `sockets` as fast as the loop goes, until `deadline`
/// or `max` datagrams; `to_for(i)` picks each one's destination. (sent, errors).
fn blast(
    sockets: &[UdpSocket],
    set: &[Vec<u8>],
    to_for: impl Fn(u64) -> SocketAddr,
    deadline: Instant,
    max: u64,
) -> (u64, u64) {
    let (mut sent, mut errors, mut i) = (0u64, 0u64, 0u64);
    let n = set.len().max(1);
    loop {
        if i % CHECK_EVERY == 0 && (Instant::now() >= deadline || i >= max) {
            return (sent, errors);
        }
        let s = &sockets[(i as usize) % sockets.len()];
        match s.send_to(&set[(i as usize) % n], to_for(i)) {
            Ok(_) => sent += 1,
            Err(_) => errors += 1,
        }
        i += 1;
    }
}

fn bound_sockets(from: &[Ipv4Addr]) -> anyhow::Result<Vec<UdpSocket>> {
    anyhow::ensure!(!from.is_empty(), "--from needs at least one address");
    from.iter()
        .map(|ip| {
            let s = UdpSocket::bind((*ip, 0)).with_context(|| format!("bind {ip}"))?;
            s.set_broadcast(true)?;
            Ok(s)
        })
        .collect()
}

fn udp(o: &Opts) -> anyhow::Result<serde_json::Value> {
    let to = o.to()?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_f100d);
    let set = Arc::new(hostile_set(&mut rng, UDP_SET)?);
    let broadcast = o
        .broadcast
        .map(|b| SocketAddr::new(IpAddr::V4(b), to.port()));
    let every = o.broadcast_every;
    let per_thread = o.max / o.threads as u64;
    let start = Instant::now();
    let deadline = start + o.duration();
    let mut threads = Vec::new();
    for t in 0..o.threads {
        let sockets = bound_sockets(&o.from)?;
        let set = Arc::clone(&set);
        threads.push(std::thread::spawn(move || {
            // Each thread starts elsewhere in the set, so they do not send in lockstep.
            let offset = (t * UDP_SET / 4) as u64;
            let pick = |i: u64| match broadcast {
                Some(b) if every > 0 && i % every == every - 1 => b,
                _ => to,
            };
            let rotated: Vec<Vec<u8>> = set
                .iter()
                .cycle()
                .skip(offset as usize)
                .take(set.len())
                .cloned()
                .collect();
            blast(&sockets, &rotated, pick, deadline, per_thread)
        }));
    }
    let mut per = Vec::new();
    for t in threads {
        per.push(
            t.join()
                .map_err(|_| anyhow::anyhow!("a sender thread panicked"))?,
        );
    }
    let took = start.elapsed();
    let sent: u64 = per.iter().map(|p| p.0).sum();
    let errors: u64 = per.iter().map(|p| p.1).sum();
    let broadcasts = if every > 0 && broadcast.is_some() {
        sent / every
    } else {
        0
    };
    Ok(json!({
        "mode": "udp", "sent": sent, "errors": errors, "secs": took.as_secs_f64(),
        "rate": rate(sent, took), "threads": o.threads, "sources": o.from.len(),
        "broadcast_share": broadcasts, "distinct_datagrams": UDP_SET,
        "per_thread": per.iter().map(|p| rate(p.0, took)).collect::<Vec<_>>(),
    }))
}

// ---------------------------------------------------------------------------------------
// The insider

fn insider(o: &Opts) -> anyhow::Result<serde_json::Value> {
    let to = o.to()?;
    let secret = SharedSecret::derive(&o.secret)?;
    let key = secret
        .discovery_key()
        .context("an insider needs a secret (the open LAN has no tag)")?;
    anyhow::ensure!(o.hold_port != 0, "--hold-port is required");
    anyhow::ensure!(o.per_ip > 0, "--per-ip is required");
    // Made-up ids announce this port; the listener never accepts, so dials hang (the
    // kernel's backlog takes the first ones, later SYNs go unanswered).
    let _hold = TcpListener::bind(("0.0.0.0", o.hold_port)).context("the hold listener")?;
    let start = Instant::now();
    let deadline = start + o.duration();
    let max = o.max;

    let burst = match o.burst_from {
        Some(ip) => {
            let mut rng = rand::rngs::StdRng::seed_from_u64(rand::rng().next_u64());
            let set: Vec<Vec<u8>> = (0..INSIDER_SET)
                .map(|i| packet(&mut rng, 1_000_000 + i as u64, o.hold_port, Some(&key)))
                .collect::<anyhow::Result<_>>()?;
            let sockets = bound_sockets(&[ip])?;
            Some(std::thread::spawn(move || {
                let started = Instant::now();
                let (sent, errors) = blast(&sockets, &set, |_| to, deadline, max);
                (sent, errors, started.elapsed())
            }))
        }
        None => None,
    };

    // Paced: every 100 ms, a tenth of a second's worth from each address; a late tick
    // is not made up for, so no address ever goes over `per_ip` a second.
    let sockets = bound_sockets(&o.from)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(rand::rng().next_u64());
    let tick = Duration::from_millis(100);
    let per_tick = o.per_ip.div_ceil(10);
    let (mut paced, mut paced_errors, mut n) = (0u64, 0u64, 0u64);
    let mut next = Instant::now();
    while Instant::now() < deadline && paced < max {
        for s in &sockets {
            for _ in 0..per_tick {
                let p = packet(&mut rng, n, o.hold_port, Some(&key))?;
                n += 1;
                match s.send_to(&p, to) {
                    Ok(_) => paced += 1,
                    Err(_) => paced_errors += 1,
                }
            }
        }
        next += tick;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
    let paced_took = start.elapsed();
    let (burst_sent, burst_errors, burst_took) = match burst {
        Some(t) => t
            .join()
            .map_err(|_| anyhow::anyhow!("the burst thread panicked"))?,
        None => (0, 0, Duration::ZERO),
    };
    Ok(json!({
        "mode": "insider", "paced_sent": paced, "paced_errors": paced_errors,
        "paced_sources": o.from.len(), "paced_rate_per_ip":
            rate(paced, paced_took) / o.from.len().max(1) as f64,
        "burst_sent": burst_sent, "burst_errors": burst_errors,
        "burst_rate": if burst_took.is_zero() { 0.0 } else { rate(burst_sent, burst_took) },
        "secs": start.elapsed().as_secs_f64(),
    }))
}

// ---------------------------------------------------------------------------------------
// Held-open TCP connections and slow handshakes

#[derive(Default)]
struct TcpStats {
    attempts: AtomicU64,
    connected: AtomicU64,
    connect_errors: AtomicU64,
    /// Closed by the node within 100 ms: refused at accept.
    closed_at_once: AtomicU64,
    /// Closed by the node after 4 s or more: the handshake timeout.
    closed_after_timeout: AtomicU64,
    closed_other: AtomicU64,
    upgrades: AtomicU64,
    open_now: AtomicU64,
    open_max: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Connects and says nothing.
    Silent,
    /// Sends the HTTP upgrade one byte every 500 ms.
    Slowloris,
    /// Completes the WebSocket upgrade, then sends nothing.
    UpgradeThenStall,
    /// Sends a bad request at once: the node fails the handshake fast.
    Churn,
}

fn mode_of(i: usize) -> Mode {
    match i % 10 {
        0..=5 => Mode::Silent,
        6 | 7 => Mode::Slowloris,
        8 => Mode::UpgradeThenStall,
        _ => Mode::Churn,
    }
}

async fn tcp(o: &Opts) -> anyhow::Result<serde_json::Value> {
    let to = o.to()?;
    anyhow::ensure!(!o.from.is_empty(), "--from needs at least one address");
    anyhow::ensure!(o.conns > 0, "--conns is required");
    let stats = Arc::new(TcpStats::default());
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + o.duration();
    let mut tasks = tokio::task::JoinSet::new();
    for ip in &o.from {
        for i in 0..o.conns {
            let mode = if o.only_churn {
                Mode::Churn
            } else {
                mode_of(i)
            };
            let (ip, stats) = (*ip, Arc::clone(&stats));
            let retry = match mode {
                Mode::Churn => o.churn_retry,
                _ => o.hold_retry,
            };
            let max = o.max;
            tasks.spawn(async move {
                // Spread the first connects over 200 ms.
                tokio::time::sleep(Duration::from_micros((i as u64 * 997) % 200_000)).await;
                while tokio::time::Instant::now() < deadline
                    && stats.attempts.fetch_add(1, Ordering::Relaxed) < max
                {
                    let _ = tokio::time::timeout_at(deadline, one_connection(ip, to, mode, &stats))
                        .await;
                    tokio::time::sleep(retry).await;
                }
            });
        }
    }
    while tasks.join_next().await.is_some() {}
    let s = &stats;
    Ok(json!({
        "mode": "tcp", "only_churn": o.only_churn, "sources": o.from.len(),
        "conns_per_source": o.conns,
        "connections": o.from.len() * o.conns,
        "attempts": get(&s.attempts).min(o.max), "connected": get(&s.connected),
        "connect_errors": get(&s.connect_errors), "closed_at_once": get(&s.closed_at_once),
        "closed_after_timeout": get(&s.closed_after_timeout),
        "closed_other": get(&s.closed_other), "upgrades": get(&s.upgrades),
        "open_max": get(&s.open_max), "secs": start.elapsed().as_secs_f64(),
    }))
}

/// One connection from `ip`, held in `mode` until the node closes it (or the caller's
/// deadline drops it).
async fn one_connection(ip: Ipv4Addr, to: SocketAddr, mode: Mode, stats: &TcpStats) {
    let socket = match tokio::net::TcpSocket::new_v4() {
        Ok(s) => s,
        Err(_) => return bump(&stats.connect_errors),
    };
    if socket.bind(SocketAddr::new(IpAddr::V4(ip), 0)).is_err() {
        return bump(&stats.connect_errors);
    }
    let mut tcp = match tokio::time::timeout(Duration::from_secs(3), socket.connect(to)).await {
        Ok(Ok(t)) => t,
        _ => return bump(&stats.connect_errors),
    };
    bump(&stats.connected);
    let open = stats.open_now.fetch_add(1, Ordering::Relaxed) + 1;
    stats.open_max.fetch_max(open, Ordering::Relaxed);
    let opened = Instant::now();
    let request = format!(
        "GET {LINK_PATH} HTTP/1.1\r\nHost: {to}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let mut buf = [0u8; 1024];
    let mut sent = 0usize;
    let mut got = Vec::new();
    match mode {
        Mode::UpgradeThenStall => {
            let _ = tcp.write_all(request.as_bytes()).await;
        }
        Mode::Churn => {
            let _ = tcp.write_all(b"GET /nothing-here HTTP/1.1\r\n\r\n").await;
        }
        Mode::Silent | Mode::Slowloris => {}
    }
    let bytes = request.as_bytes();
    loop {
        let drip = async {
            match mode {
                Mode::Slowloris if sent < bytes.len() => {
                    tokio::time::sleep(Duration::from_millis(500)).await
                }
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            r = tcp.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if got.len() < 64 {
                        got.extend_from_slice(&buf[..n]);
                        if got.starts_with(b"HTTP/1.1 101") {
                            bump(&stats.upgrades);
                            got.resize(64, 0);
                        }
                    }
                }
            },
            () = drip => {
                if tcp.write_all(&bytes[sent..sent + 1]).await.is_err() {
                    break;
                }
                sent += 1;
            }
        }
    }
    stats.open_now.fetch_sub(1, Ordering::Relaxed);
    let held = opened.elapsed();
    if held < Duration::from_millis(100) {
        bump(&stats.closed_at_once);
    } else if held >= Duration::from_secs(4) {
        bump(&stats.closed_after_timeout);
    } else {
        bump(&stats.closed_other);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_off_the_test_lan_are_refused() {
        assert!(check_destination("198.51.100.7".parse().unwrap()).is_ok());
        assert!(check_destination("127.0.0.1".parse().unwrap()).is_ok());
        assert!(check_destination("10.0.0.1".parse().unwrap()).is_err());
        assert!(check_destination("198.51.101.1".parse().unwrap()).is_err());
    }

    #[test]
    fn insider_packets_decode_and_verify_under_the_secret() {
        let key = DiscoveryKey::from_bytes([7; 32]);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let a = packet(&mut rng, 1, 4000, Some(&key)).unwrap();
        let b = packet(&mut rng, 2, 4000, Some(&key)).unwrap();
        let (da, db) = (Packet::decode(&a).unwrap(), Packet::decode(&b).unwrap());
        assert!(key.verify(da.signed, da.tag.unwrap()));
        assert_ne!(da.packet.node_id, db.packet.node_id, "a fresh id each");
    }
}
