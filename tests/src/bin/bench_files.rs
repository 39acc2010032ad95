//! File-transfer benchmark of issue 17, on the network-namespace LAN of
//! `lanchat_tests::netns`.
//!
//! ```text
//! bench_files [--size-mib 1024] [--rounds 1] [--interval-ms 100] [--max-dms 3000]
//! ```
//!
//! Run as root (namespaces), with `lanchat` built next to this binary (or `LANCHAT_BIN`).
//! `scripts/bench-files.sh` is the documented way to run it.
//!
//! Two namespace hosts, `a` and `b`, run release `lanchat serve` nodes (mesh on, the same
//! shared secret); b downloads files up to the benchmark's size by itself. Each round:
//!
//! 1. **Raw TCP** (baseline): `tcp-source` in `a` writes the same number of bytes in
//!    128 KiB pieces to `tcp-sink` in `b` over the same veth pair; timed from just
//!    before the connect to the sink's last byte (CLOCK_MONOTONIC, one clock for every
//!    namespace of the kernel).
//! 2. **Single core** (baseline): on one thread, the source file read in 128 KiB pieces,
//!    each encrypted with ChaCha20-Poly1305 (the link's Noise cipher), hashed with
//!    SHA-256 (the chunk check) and written to a file (fdatasync every 16 pieces, as the
//!    receiver's batches).
//! 3. **lanchat**: a fresh random file of the size is sent a → b (`POST …/files`,
//!    streamed by curl); timed from the POST's `201` to b's `file.progress` event with
//!    `state: available` (b's events WebSocket, `listen` in `b`). Meanwhile b's RSS is
//!    sampled every 200 ms, and `pace` in `a` sends b a DM every `--interval-ms`, each
//!    timed from just before its POST to b's `message.new`. Then as many DMs with no
//!    transfer running: the latency baseline.
//!
//! Every process it starts is ended by PID; every loop is bounded in count and time;
//! traffic goes only to loopback and to the benchmark's own hosts in 198.51.100.0/24.
//! The source file and both hosts' blob stores are removed at the end.
//!
//! With `BENCH_FILES_PERF=DIR` (and `perf` installed), each node is sampled by
//! `perf record` from the `201` to `available`: `DIR/a-round{r}.data` and
//! `DIR/b-round{r}.data`, for `perf report -i …` — where a transfer's time goes.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, ensure, Context};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use futures_util::StreamExt;
use lanchat_tests::bench::{
    api_of, clk_tck, cpu_ticks, fmt_summary, load_average, machine, summary,
};
use lanchat_tests::bench_worker::{
    check_lan, current_thread, events_socket, mono_ns, ns_to_ms, read_token, stdin_lines, text_of,
    Worker,
};
use lanchat_tests::netns::{Host, Lan, Method, NodeSettings};
use lanchat_tests::{artifacts_dir, wait_until};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// The chunk size of this build (docs/PROTOCOL.md, "File messages").
const CHUNK: usize = 128 * 1024;
/// How long the upload (`POST …/files`) may take.
const UPLOAD_LIMIT: Duration = Duration::from_secs(600);
/// How long b may take to have the file, from the `201`.
const TRANSFER_LIMIT: Duration = Duration::from_secs(600);
/// How long one DM waits for its `message.new` before counting it lost.
const DM_WAIT: Duration = Duration::from_secs(10);
/// The raw TCP baseline's port on b.
const TCP_PORT: u16 = 19300;
/// A DM's text length, as bench_dm's default.
const TEXT_BYTES: usize = 100;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("listen") => current_thread(listen_main(rest)),
        Some("pace") => current_thread(pace_main(rest)),
        Some("tcp-sink") => current_thread(tcp_sink_main(rest)),
        Some("tcp-source") => current_thread(tcp_source_main(rest)),
        _ => {
            let opts = Options::parse(&args)?;
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?
                .block_on(bench(opts))
        }
    }
}

/// Bytes per second in MB/s (10⁶ bytes).
fn mb_per_sec(bytes: u64, ns: u64) -> f64 {
    if ns == 0 {
        return f64::NAN;
    }
    bytes as f64 / (ns as f64 / 1e9) / 1e6
}

// ---------------------------------------------------------------------------------------
// Options

#[derive(Debug, Clone)]
struct Options {
    size_mib: u64,
    rounds: usize,
    interval_ms: u64,
    max_dms: usize,
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Options> {
        let mut o = Options {
            size_mib: 1024,
            rounds: 1,
            interval_ms: 100,
            max_dms: 3000,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            let n: u64 = value
                .parse()
                .with_context(|| format!("{flag}: a whole number"))?;
            match flag.as_str() {
                "--size-mib" => o.size_mib = n,
                "--rounds" => o.rounds = usize::try_from(n)?,
                "--interval-ms" => o.interval_ms = n,
                "--max-dms" => o.max_dms = usize::try_from(n)?,
                _ => bail!("unknown option {flag}"),
            }
        }
        if !(1..=8192).contains(&o.size_mib) || !(1..=3).contains(&o.rounds) {
            bail!("--size-mib 1..=8192, --rounds 1..=3");
        }
        if !(20..=1000).contains(&o.interval_ms) || !(10..=6000).contains(&o.max_dms) {
            bail!("--interval-ms 20..=1000, --max-dms 10..=6000");
        }
        Ok(o)
    }
}

// ---------------------------------------------------------------------------------------
// The benchmark

fn bench_settings() -> NodeSettings {
    NodeSettings {
        // The product's defaults.
        heartbeat_interval_sec: 15,
        peer_ttl_sec: 45,
        ..NodeSettings::default()
    }
}

/// `len` bytes from the kernel's random source into `path` (never repeating, so no two
/// rounds share content and nothing compresses).
fn random_file(path: &Path, len: u64) -> anyhow::Result<()> {
    let mut source = std::fs::File::open("/dev/urandom")?.take(len);
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    std::io::copy(&mut source, &mut out)?;
    out.flush()?;
    Ok(())
}

/// Bytes free on the file system holding `dir` (`df`).
fn free_bytes(dir: &Path) -> anyhow::Result<u64> {
    let out = std::process::Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(dir)
        .output()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .context("df printed nothing")?
        .trim()
        .parse()
        .context("df's figure")
}

/// `VmRSS` and `VmHWM` of a process, in kB.
fn rss_kb(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Removes what the benchmark wrote big: the source, copies, blob stores.
struct BigFiles(Mutex<Vec<PathBuf>>);

impl BigFiles {
    fn add(&self, path: PathBuf) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(path);
    }
}

impl Drop for BigFiles {
    fn drop(&mut self) {
        for path in self.0.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = std::fs::remove_file(path);
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

async fn bench(opts: Options) -> anyhow::Result<()> {
    let started = Instant::now();
    let size = opts.size_mib << 20;
    let mut results = json!({
        "options": {
            "size_mib": opts.size_mib, "size_bytes": size, "rounds": opts.rounds,
            "interval_ms": opts.interval_ms, "max_dms": opts.max_dms, "text_bytes": TEXT_BYTES,
        },
        "machine": machine()?,
        "started_unix": SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs(),
        "load_average": { "start": load_average() },
    });
    println!("machine: {}", results["machine"]);
    println!("load average at start: {}", load_average());

    let lan = Lan::new("bench_files")?;
    println!("LAN {}", lan.name());
    // Source + a's blob + b's blob (+ b's partial) per round, and the baseline's copy.
    let need = size * (3 * opts.rounds as u64 + 1) + (1 << 30);
    let free = free_bytes(lan.dir())?;
    ensure!(
        free >= need,
        "{} MB free on {}, the benchmark needs about {} MB: try a smaller --size-mib",
        free / 1_000_000,
        lan.dir().display(),
        need / 1_000_000
    );
    let big = BigFiles(Mutex::new(Vec::new()));
    let a = lan.add_host("a", bench_settings()).await?;
    let b = lan.add_host("b", bench_settings()).await?;
    big.add(a.data_dir.join("blobs"));
    big.add(b.data_dir.join("blobs"));
    a.wait_mesh_running(Duration::from_secs(30)).await?;
    b.wait_mesh_running(Duration::from_secs(30)).await?;
    wait_until(
        Duration::from_secs(60),
        "a and b to list each other",
        || async { (a.lists(&b).await.ok()? && b.lists(&a).await.ok()?).then_some(()) },
    )
    .await?;
    println!("a {} and b {} see each other", a.ip(), b.ip());
    b.call_expect(
        Method::Put,
        "v1/settings",
        Some(&json!({"files": {"auto_download_max_bytes": size}})),
        200,
    )
    .await?;

    let (a_url, a_token) = api_of(&a)?;
    let (b_url, b_token) = api_of(&b)?;
    let mut listener = Worker::start(
        &b.ns,
        "listener",
        &["listen".into(), b_url],
        Some(b_token.as_str()),
    )
    .await?;
    let mut pace = Worker::start(
        &a.ns,
        "pace",
        &["pace".into(), a_url, b.node_id.clone()],
        Some(a_token.as_str()),
    )
    .await?;

    // Warm-up: the first DM dials the link.
    pace.ask("start 20 50 dmw", Duration::from_secs(10)).await?;
    pace.ask("wait", Duration::from_secs(60)).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    listener.ask("dump", Duration::from_secs(10)).await?;

    let tck = clk_tck()?;
    let mut rounds = Vec::new();
    for r in 0..opts.rounds {
        let source = lan.dir().join(format!("source-{r}.bin"));
        big.add(source.clone());
        let t = Instant::now();
        let src = source.clone();
        tokio::task::spawn_blocking(move || random_file(&src, size)).await??;
        println!(
            "round {r}: {} MiB of random bytes made in {:.1} s",
            opts.size_mib,
            t.elapsed().as_secs_f64()
        );

        // (a) Raw TCP over the same veth pair.
        let tcp = raw_tcp(&a, &b, size).await?;
        println!(
            "round {r}: raw TCP a → b: {:.0} MB/s",
            tcp["mb_per_sec"].as_f64().unwrap_or(f64::NAN)
        );

        // (b) One core: encrypt + SHA-256 + write, 128 KiB at a time.
        let copy = lan.dir().join(format!("baseline-{r}.bin"));
        big.add(copy.clone());
        let (src, dst) = (source.clone(), copy.clone());
        let core = tokio::task::spawn_blocking(move || single_core(&src, &dst)).await??;
        let _ = std::fs::remove_file(&copy);
        println!(
            "round {r}: one core, ChaCha20-Poly1305 + SHA-256 + write: {:.0} MB/s ({})",
            core["mb_per_sec"].as_f64().unwrap_or(f64::NAN),
            core["split_secs"]
        );

        // lanchat.
        let lc = lanchat_round(
            &opts,
            r,
            &a,
            &b,
            &source,
            size,
            &mut listener,
            &mut pace,
            tck,
        )
        .await?;
        let _ = std::fs::remove_file(&source);
        let lc_rate = lc["mb_per_sec"].as_f64().unwrap_or(f64::NAN);
        let floor = tcp["mb_per_sec"]
            .as_f64()
            .unwrap_or(f64::NAN)
            .min(core["mb_per_sec"].as_f64().unwrap_or(f64::NAN));
        println!(
            "round {r}: lanchat 201 → b available: {lc_rate:.0} MB/s; ratio to min(raw TCP, one core) = {:.3}",
            lc_rate / floor
        );
        rounds.push(json!({
            "raw_tcp": tcp, "single_core": core, "lanchat": lc,
            "ratio_to_min_baseline": lc_rate / floor,
            "load_average": load_average(),
        }));
    }
    results["rounds"] = json!(rounds);
    results["load_average"]["end"] = load_average();

    // Targets (the last round's figures; one round by default).
    let last = &results["rounds"][opts.rounds - 1];
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let ratio = f(&last["ratio_to_min_baseline"]);
    let growth_mb = f(&last["lanchat"]["rss_b"]["growth_kb"]) * 1024.0 / 1e6;
    let p99 = f(&last["lanchat"]["dm_during_ms"]["p99"]);
    let targets = json!({
        "throughput_ratio_ge_0_8": ratio >= 0.8,
        "throughput_ratio": ratio,
        "rss_growth_le_32mb": growth_mb <= 32.0,
        "rss_growth_mb": growth_mb,
        "dm_p99_during_le_50ms": p99 <= 50.0,
        "dm_p99_during_ms": p99,
    });
    println!("\ntargets:");
    println!(
        "  lanchat / min(raw TCP, one core) = {ratio:.3} ≥ 0.8: {}",
        targets["throughput_ratio_ge_0_8"]
    );
    println!(
        "  b's RSS growth {growth_mb:.1} MB ≤ 32 MB: {}",
        targets["rss_growth_le_32mb"]
    );
    println!(
        "  DM p99 during the transfer {p99:.1} ms ≤ 50 ms: {}",
        targets["dm_p99_during_le_50ms"]
    );
    results["targets"] = targets;
    results["elapsed_secs"] = json!(started.elapsed().as_secs_f64());
    drop(pace);
    drop(listener);
    drop(a);
    drop(b);
    drop(big);
    drop(lan);
    let out = artifacts_dir("bench_files")?.join("results.json");
    std::fs::write(&out, serde_json::to_vec_pretty(&results)?)?;
    println!("\nresults: {}", out.display());
    Ok(())
}

/// The raw TCP baseline: `size` bytes a → b in 128 KiB writes, timed from just before
/// the connect to the sink's last byte.
async fn raw_tcp(a: &Host, b: &Host, size: u64) -> anyhow::Result<Value> {
    let addr = format!("{}:{TCP_PORT}", b.ip());
    let mut sink =
        Worker::start(&b.ns, "tcp-sink", &["tcp-sink".into(), addr.clone()], None).await?;
    let mut source = Worker::start(
        &a.ns,
        "tcp-source",
        &["tcp-source".into(), addr, size.to_string()],
        None,
    )
    .await?;
    let sent = source.ask("send", Duration::from_secs(600)).await?;
    let got = sink.json_line(Duration::from_secs(60)).await?;
    let t0 = sent["t0"].as_u64().context("t0")?;
    let last = got["last_ns"].as_u64().context("last_ns")?;
    let bytes = got["bytes"].as_u64().unwrap_or(0);
    ensure!(bytes == size, "the sink got {bytes} of {size} bytes");
    Ok(json!({
        "bytes": bytes,
        "secs": ns_to_ms(last.saturating_sub(t0)) / 1e3,
        "mb_per_sec": mb_per_sec(bytes, last.saturating_sub(t0)),
    }))
}

/// The single-core baseline: `source` in 128 KiB pieces, each encrypted in place with
/// ChaCha20-Poly1305, hashed with SHA-256 and written to `dest`, `fdatasync` every 16
/// pieces and at the end; one thread.
fn single_core(source: &Path, dest: &Path) -> anyhow::Result<Value> {
    let cipher = ChaCha20Poly1305::new(&[7u8; 32].into());
    let mut input = std::fs::File::open(source)?;
    let mut out = std::fs::File::create(dest)?;
    let mut buf = vec![0u8; CHUNK];
    let (mut read_ns, mut enc_ns, mut sha_ns, mut write_ns) = (0u64, 0u64, 0u64, 0u64);
    let mut total = 0u64;
    let mut digests = 0u8;
    let t0 = mono_ns();
    for piece in 0u64.. {
        let t = mono_ns();
        let mut n = 0;
        while n < CHUNK {
            let k = input.read(&mut buf[n..])?;
            if k == 0 {
                break;
            }
            n += k;
        }
        if n == 0 {
            break;
        }
        let t1 = mono_ns();
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&piece.to_le_bytes());
        let tag = cipher
            .encrypt_in_place_detached(&nonce.into(), b"", &mut buf[..n])
            .map_err(|_| anyhow!("encrypt"))?;
        let t2 = mono_ns();
        let digest = Sha256::digest(&buf[..n]);
        digests ^= digest[0] ^ tag[0];
        let t3 = mono_ns();
        out.write_all(&buf[..n])?;
        if piece % 16 == 15 {
            out.sync_data()?;
        }
        let t4 = mono_ns();
        read_ns += t1 - t;
        enc_ns += t2 - t1;
        sha_ns += t3 - t2;
        write_ns += t4 - t3;
        total += n as u64;
    }
    out.sync_data()?;
    let elapsed = mono_ns() - t0;
    drop(out);
    let _ = std::fs::remove_file(dest);
    let secs = |ns: u64| (ns as f64 / 1e9 * 100.0).round() / 100.0;
    Ok(json!({
        "bytes": total,
        "secs": elapsed as f64 / 1e9,
        "mb_per_sec": mb_per_sec(total, elapsed),
        "split_secs": { "read": secs(read_ns), "encrypt": secs(enc_ns), "sha256": secs(sha_ns),
                        "write_fdatasync": secs(write_ns) },
        "encrypt_only_mb_per_sec": mb_per_sec(total, enc_ns),
        "sha256_only_mb_per_sec": mb_per_sec(total, sha_ns),
        "check": digests,
    }))
}

/// RSS samples of b (and a) every 200 ms until `stop`: (CLOCK_MONOTONIC ns, b kB, a kB).
fn sample_rss(
    a_pid: u32,
    b_pid: u32,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<(u64, u64, u64)>> {
    tokio::spawn(async move {
        let mut out = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let max = (UPLOAD_LIMIT + TRANSFER_LIMIT).as_millis() / 200 + 100;
        for _ in 0..max {
            tick.tick().await;
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let b = rss_kb(b_pid).map(|(r, _)| r).unwrap_or(0);
            let a = rss_kb(a_pid).map(|(r, _)| r).unwrap_or(0);
            out.push((mono_ns(), b, a));
        }
        out
    })
}

/// One lanchat transfer a → b of `source`, with the RSS sampling and the DMs.
#[allow(clippy::too_many_arguments)]
async fn lanchat_round(
    opts: &Options,
    r: usize,
    a: &Host,
    b: &Host,
    source: &Path,
    size: u64,
    listener: &mut Worker,
    pace: &mut Worker,
    tck: f64,
) -> anyhow::Result<Value> {
    let (a_pid, b_pid) = (a.pid().context("a's pid")?, b.pid().context("b's pid")?);
    let diag_a0 = a.get("v1/diagnostics").await?;
    let diag_b0 = b.get("v1/diagnostics").await?;
    let (rss_before, hwm_before) = rss_kb(b_pid).context("b's RSS")?;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_rss(a_pid, b_pid, Arc::clone(&stop));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let t_upload = mono_ns();
    let (code, sent) = a
        .upload_file(
            &a.dm_with(b),
            &format!("name=bench-{r}.bin"),
            source,
            UPLOAD_LIMIT,
        )
        .await?;
    let t_201 = mono_ns();
    ensure!(code == 201, "upload: {code} {sent}");
    let profilers = start_profilers(r, [a_pid, b_pid])?;
    // The DMs start with the transfer: b hears of the file only now.
    pace.ask(
        &format!("start {} {} dmx{r}", opts.max_dms, opts.interval_ms),
        Duration::from_secs(10),
    )
    .await?;
    let cpu_before = [a_pid, b_pid].map(|p| cpu_ticks(p).unwrap_or(0));
    let file_id = sent["attachments"][0]["file_id"]
        .as_str()
        .context("no attachment in the message")?
        .to_string();
    println!(
        "round {r}: upload (import) {:.1} s = {:.0} MB/s; file {file_id}",
        ns_to_ms(t_201 - t_upload) / 1e3,
        mb_per_sec(size, t_201 - t_upload)
    );

    // b's events say when it has the file; b's status, once a second, as a check.
    let deadline = Instant::now() + TRANSFER_LIMIT;
    let mut polls = 0u64;
    let mut via_status = None;
    let file = loop {
        let v = listener
            .ask(&format!("file {file_id}"), Duration::from_secs(10))
            .await?;
        if v["available_ns"].as_u64().is_some() {
            break v;
        }
        polls += 1;
        if polls.is_multiple_of(10) {
            if let Ok(s) = b.get(&format!("v1/files/{file_id}/status")).await {
                if s["state"] == "available" && via_status.is_none() {
                    via_status = Some(mono_ns());
                }
                if s["state"] == "failed" {
                    bail!("b's download failed: {s}");
                }
            }
            if let Some(at) = via_status {
                // The event should have come by now: take the status's time.
                if mono_ns() - at > 2_000_000_000 {
                    let mut v = v;
                    v["available_ns"] = json!(at);
                    v["available_from"] = json!("status poll");
                    break v;
                }
            }
        }
        if Instant::now() >= deadline {
            let s = b.get(&format!("v1/files/{file_id}/status")).await;
            bail!("b does not have the file after {TRANSFER_LIMIT:?}: {s:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let t_avail = file["available_ns"].as_u64().context("available_ns")?;
    stop_profilers(profilers)?;
    let cpu_after = [a_pid, b_pid].map(|p| cpu_ticks(p).unwrap_or(0));
    let during = pace.ask("stop", Duration::from_secs(60)).await?;
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.await?;
    let (_, hwm_after) = rss_kb(b_pid).context("b's RSS")?;
    let status = b.get(&format!("v1/files/{file_id}/status")).await?;
    ensure!(
        status["state"] == "available" && status["have_bytes"].as_u64() == Some(size),
        "b's status after the transfer: {status}"
    );
    let transfer_ns = t_avail.saturating_sub(t_201);
    let rate = mb_per_sec(size, transfer_ns);
    let window = transfer_ns as f64 / 1e9;
    let cpu_pct =
        [0, 1].map(|i| cpu_after[i].saturating_sub(cpu_before[i]) as f64 / tck / window * 100.0);
    println!(
        "round {r}: 201 → b available {window:.2} s = {rate:.0} MB/s (first file event after {:.0} ms); CPU a {:.0} %, b {:.0} % (100 % = one core)",
        file["first_ns"].as_u64().map(|f| ns_to_ms(f.saturating_sub(t_201))).unwrap_or(f64::NAN),
        cpu_pct[0],
        cpu_pct[1]
    );

    // The baseline: as many DMs, no transfer.
    let n_during = during["samples"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter(|x| x["t0"].as_u64().is_some_and(|t| t < t_avail))
                .count()
        })
        .unwrap_or(0)
        .max(20);
    tokio::time::sleep(Duration::from_secs(2)).await;
    pace.ask(
        &format!("start {n_during} {} dmb{r}", opts.interval_ms),
        Duration::from_secs(10),
    )
    .await?;
    let idle = pace
        .ask(
            "wait",
            Duration::from_millis(opts.interval_ms) * n_during as u32 + Duration::from_secs(60),
        )
        .await?;
    // Collect b's stamps (the last few may still be on their way), ≤ DM_WAIT.
    let mut received = serde_json::Map::new();
    let grace_end = Instant::now() + DM_WAIT;
    let wanted: Vec<&Value> = during["samples"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(idle["samples"].as_array().into_iter().flatten())
        .collect();
    loop {
        if let Value::Object(part) = listener.ask("dump", Duration::from_secs(30)).await? {
            if let Some(Value::Object(dms)) = part.get("dms") {
                received.extend(dms.clone());
            }
        }
        let all_in = wanted
            .iter()
            .all(|s| s["tag"].as_str().is_some_and(|t| received.contains_key(t)));
        if all_in || Instant::now() >= grace_end {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let latencies = |v: &Value, only_before: Option<u64>| {
        let mut ms = Vec::new();
        let (mut lost, mut errors) = (0u64, 0u64);
        for s in v["samples"].as_array().into_iter().flatten() {
            let t0 = s["t0"].as_u64().unwrap_or(0);
            if only_before.is_some_and(|end| t0 >= end) {
                continue;
            }
            if s["error"].is_string() {
                errors += 1;
                continue;
            }
            match s["tag"]
                .as_str()
                .and_then(|t| received.get(t))
                .and_then(Value::as_u64)
            {
                Some(at) => ms.push(ns_to_ms(at.saturating_sub(t0))),
                None => lost += 1,
            }
        }
        (ms, lost, errors)
    };
    let (during_ms, during_lost, during_errors) = latencies(&during, Some(t_avail));
    let (idle_ms, idle_lost, idle_errors) = latencies(&idle, None);
    let post_ms = |v: &Value, only_before: Option<u64>| {
        summary(
            v["samples"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|s| only_before.is_none_or(|end| s["t0"].as_u64().is_some_and(|t| t < end)))
                .filter_map(|s| s["resp_ns"].as_u64().map(ns_to_ms))
                .collect(),
        )
    };
    let dm_during = summary(during_ms);
    let dm_idle = summary(idle_ms);
    println!(
        "round {r}: DM → b's message.new during the transfer: {} (lost {during_lost}, POST errors {during_errors})",
        fmt_summary(&dm_during, "ms")
    );
    println!(
        "round {r}: DM → b's message.new, no transfer:        {} (lost {idle_lost}, POST errors {idle_errors})",
        fmt_summary(&dm_idle, "ms")
    );

    // RSS: before, and the largest sample from the 201 to available.
    let in_window: Vec<&(u64, u64, u64)> = samples
        .iter()
        .filter(|(t, _, _)| *t >= t_201 && *t <= t_avail)
        .collect();
    let max_b = in_window.iter().map(|s| s.1).max().unwrap_or(0);
    let max_b_upload = samples
        .iter()
        .filter(|(t, _, _)| *t < t_201)
        .map(|s| s.1)
        .max()
        .unwrap_or(0);
    let max_a = samples.iter().map(|s| s.2).max().unwrap_or(0);
    let rss_b = json!({
        "before_kb": rss_before,
        "max_during_kb": max_b,
        "growth_kb": max_b.saturating_sub(rss_before),
        "max_during_upload_kb": max_b_upload,
        "samples_during": in_window.len(),
        "vmhwm_before_kb": hwm_before,
        "vmhwm_after_kb": hwm_after,
    });
    println!(
        "round {r}: b's RSS before {:.1} MB, max during the transfer {:.1} MB ({} samples; VmHWM {:.1} → {:.1} MB); a's max {:.1} MB",
        rss_before as f64 * 1024.0 / 1e6,
        max_b as f64 * 1024.0 / 1e6,
        in_window.len(),
        hwm_before as f64 * 1024.0 / 1e6,
        hwm_after as f64 * 1024.0 / 1e6,
        max_a as f64 * 1024.0 / 1e6
    );
    let diag_a1 = a.get("v1/diagnostics").await?;
    let diag_b1 = b.get("v1/diagnostics").await?;
    Ok(json!({
        "file_id": file_id,
        "upload_secs": ns_to_ms(t_201 - t_upload) / 1e3,
        "upload_mb_per_sec": mb_per_sec(size, t_201 - t_upload),
        "transfer_secs": window,
        "mb_per_sec": rate,
        "first_file_event_ms": file["first_ns"].as_u64().map(|f| ns_to_ms(f.saturating_sub(t_201))),
        "file_events": file["events"],
        "available_from": file.get("available_from").cloned().unwrap_or(json!("event")),
        "progress": file["timeline"],
        "cpu_pct_a": cpu_pct[0],
        "cpu_pct_b": cpu_pct[1],
        "rss_b": rss_b,
        "rss_a_max_kb": max_a,
        "rss_timeline": samples.iter().map(|(t, b, a)| json!([ns_to_ms(t.saturating_sub(t_201)).round(), b, a])).collect::<Vec<_>>(),
        "dm_during_ms": dm_during,
        "dm_during_lost": during_lost,
        "dm_during_post_errors": during_errors,
        "dm_during_post_response_ms": post_ms(&during, Some(t_avail)),
        "dm_idle_ms": dm_idle,
        "dm_idle_lost": idle_lost,
        "dm_idle_post_errors": idle_errors,
        "dm_idle_post_response_ms": post_ms(&idle, None),
        "diagnostics_files": {
            "a_before": diag_a0["files"], "a_after": diag_a1["files"],
            "b_before": diag_b0["files"], "b_after": diag_b1["files"],
        },
        "status_after": status,
    }))
}

// ---------------------------------------------------------------------------------------
// Subcommands run inside a namespace

/// What b's events said about one file.
#[derive(Default)]
struct FileSeen {
    first_ns: Option<u64>,
    available_ns: Option<u64>,
    events: u64,
    /// (ns, have_bytes, bytes_per_sec), at most one a second.
    timeline: Vec<(u64, u64, u64)>,
}

#[derive(Default)]
struct Heard {
    /// First word of a received DM → when its `message.new` arrived.
    dms: serde_json::Map<String, Value>,
    files: HashMap<String, FileSeen>,
    resyncs: u64,
}

/// `listen <api url>`, the token on stdin: stamps every received `message.new` (not
/// outgoing) by the first word of its text, and every `file.progress`. Commands: `dump`
/// prints and forgets the DMs; `file ID` prints what was heard of that file; `quit`.
async fn listen_main(args: &[String]) -> anyhow::Result<()> {
    let [url] = args else {
        bail!("listen <api url> (the token on stdin)");
    };
    let mut stdin = stdin_lines();
    let token = read_token(&mut stdin).await?;
    let socket = events_socket(url, &token).await?;
    let heard: Arc<Mutex<Heard>> = Arc::default();
    let store = Arc::clone(&heard);
    tokio::spawn(async move {
        let (_sink, mut stream) = socket.split();
        while let Some(Ok(frame)) = stream.next().await {
            let at = mono_ns();
            let Message::Text(text) = frame else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            let mut h = store.lock().unwrap_or_else(|e| e.into_inner());
            match v["type"].as_str() {
                Some("message.new") if v["message"]["outgoing"] == false => {
                    let word = v["message"]["text"]
                        .as_str()
                        .and_then(|t| t.split(' ').next())
                        .unwrap_or_default();
                    if word.starts_with("dm") && h.dms.len() < 100_000 {
                        h.dms.entry(word.to_string()).or_insert(json!(at));
                    }
                }
                Some("file.progress") => {
                    let file = &v["file"];
                    let Some(id) = file["file_id"].as_str() else {
                        continue;
                    };
                    if h.files.len() >= 64 && !h.files.contains_key(id) {
                        continue;
                    }
                    let seen = h.files.entry(id.to_string()).or_default();
                    seen.events += 1;
                    seen.first_ns.get_or_insert(at);
                    if file["state"] == "available" {
                        seen.available_ns.get_or_insert(at);
                    }
                    let have = file["have_bytes"].as_u64().unwrap_or(0);
                    let bps = file["bytes_per_sec"].as_u64().unwrap_or(0);
                    let due = seen
                        .timeline
                        .last()
                        .is_none_or(|(t, _, _)| at.saturating_sub(*t) >= 1_000_000_000);
                    if due && seen.timeline.len() < 10_000 {
                        seen.timeline.push((at, have, bps));
                    }
                }
                Some("resync") => h.resyncs += 1,
                _ => {}
            }
        }
    });
    println!("ready");
    while let Some(line) = stdin.recv().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        let mut h = heard.lock().unwrap_or_else(|e| e.into_inner());
        match words.as_slice() {
            ["dump"] => {
                let dms = std::mem::take(&mut h.dms);
                println!("{}", json!({ "dms": dms, "resyncs": h.resyncs }));
            }
            ["file", id] => {
                let v = match h.files.get(*id) {
                    Some(f) => json!({
                        "first_ns": f.first_ns,
                        "available_ns": f.available_ns,
                        "events": f.events,
                        "timeline": f.timeline.iter().map(|(t, have, bps)| json!({
                            "ms_since_first": ns_to_ms(t.saturating_sub(f.first_ns.unwrap_or(*t))).round(),
                            "have_bytes": have, "bytes_per_sec": bps,
                        })).collect::<Vec<_>>(),
                    }),
                    None => json!({ "events": 0 }),
                };
                println!("{v}");
            }
            ["quit"] => break,
            _ => println!(
                "{}",
                json!({ "error": format!("unknown command {line:?}") })
            ),
        }
    }
    Ok(())
}

/// One DM of `pace`: its tag, when its POST started, how long it took to answer.
type Sample = Value;

/// `pace <api url> <peer id>`, the token on stdin. `start K MS TAG` sends DMs `TAG-i` to
/// the peer, the i-th at start + i × MS (at once when behind), until K are sent or
/// `stop`; `wait` waits for the K; both print the samples.
async fn pace_main(args: &[String]) -> anyhow::Result<()> {
    let [url, peer] = args else {
        bail!("pace <api url> <peer id> (the token on stdin)");
    };
    let mut stdin = stdin_lines();
    let token = read_token(&mut stdin).await?;
    let client = reqwest::Client::builder()
        .timeout(DM_WAIT)
        .no_proxy()
        .build()?;
    let post_url = format!("{url}api/v1/conversations/dm:lan:{peer}/messages");
    let token = Arc::new(token);
    let stop = Arc::new(AtomicBool::new(false));
    let mut running: Option<tokio::task::JoinHandle<Vec<Sample>>> = None;
    println!("ready");
    while let Some(line) = stdin.recv().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        let out = match words.as_slice() {
            ["start", k, ms, tag] if running.is_none() => {
                let k: usize = k.parse::<usize>()?.min(10_000);
                let ms: u64 = ms.parse()?;
                let (client, post_url, token, stop, tag) = (
                    client.clone(),
                    post_url.clone(),
                    Arc::clone(&token),
                    Arc::clone(&stop),
                    tag.to_string(),
                );
                stop.store(false, Ordering::Relaxed);
                running = Some(tokio::spawn(async move {
                    let start = tokio::time::Instant::now();
                    let mut samples = Vec::with_capacity(k);
                    for i in 0..k {
                        tokio::time::sleep_until(start + Duration::from_millis(ms * i as u64))
                            .await;
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let word = format!("{tag}-{i:05}");
                        let t0 = mono_ns();
                        let resp = client
                            .post(&post_url)
                            .bearer_auth(token.as_str())
                            .json(&json!({ "text": text_of(&word, TEXT_BYTES) }))
                            .send()
                            .await;
                        let t1 = mono_ns();
                        let error = match resp {
                            Ok(r) if r.status().as_u16() == 201 => None,
                            Ok(r) => Some(format!("POST answered {}", r.status())),
                            Err(e) => Some(format!("{e:#}")),
                        };
                        samples.push(json!({
                            "tag": word, "t0": t0, "resp_ns": t1 - t0, "error": error,
                        }));
                    }
                    samples
                }));
                Ok(json!({ "started": k }))
            }
            ["stop"] | ["wait"] => match running.take() {
                Some(task) => {
                    if words == ["stop"] {
                        stop.store(true, Ordering::Relaxed);
                    }
                    let samples = task.await?;
                    Ok(json!({ "samples": samples }))
                }
                None => Err(anyhow!("nothing running")),
            },
            ["quit"] => break,
            _ => Err(anyhow!("unknown command {line:?}")),
        };
        let v = out.unwrap_or_else(|e: anyhow::Error| json!({ "error": format!("{e:#}") }));
        println!("{v}");
    }
    Ok(())
}

/// `tcp-sink <ip:port>`: takes one connection, reads it to its end, prints how many
/// bytes came and when the first and last did.
async fn tcp_sink_main(args: &[String]) -> anyhow::Result<()> {
    let [addr] = args else {
        bail!("tcp-sink <ip:port>");
    };
    check_lan(addr)?;
    let listener = tokio::net::TcpListener::bind(addr.as_str()).await?;
    println!("ready");
    let (mut tcp, _) = tokio::time::timeout(Duration::from_secs(120), listener.accept())
        .await
        .map_err(|_| anyhow!("no connection in 120 s"))??;
    let mut buf = vec![0u8; 1 << 20];
    let (mut bytes, mut first, mut last) = (0u64, 0u64, 0u64);
    loop {
        let n = tokio::time::timeout(Duration::from_secs(60), tcp.read(&mut buf))
            .await
            .map_err(|_| anyhow!("the source stalled"))??;
        if n == 0 {
            break;
        }
        last = mono_ns();
        if bytes == 0 {
            first = last;
        }
        bytes += n as u64;
    }
    println!(
        "{}",
        json!({ "bytes": bytes, "first_ns": first, "last_ns": last })
    );
    Ok(())
}

/// `tcp-source <ip:port> <bytes>`: on `send`, connects and writes `bytes` in 128 KiB
/// pieces; prints when it started.
async fn tcp_source_main(args: &[String]) -> anyhow::Result<()> {
    let [addr, bytes] = args else {
        bail!("tcp-source <ip:port> <bytes>");
    };
    check_lan(addr)?;
    let total: u64 = bytes.parse()?;
    let mut stdin = stdin_lines();
    let mut piece = vec![0u8; CHUNK];
    // Not all zeros (nothing on the way compresses, but be plain about it).
    for (i, b) in piece.iter_mut().enumerate() {
        *b = (i.wrapping_mul(2_654_435_761) >> 13) as u8;
    }
    println!("ready");
    while let Some(line) = stdin.recv().await {
        match line.trim() {
            "send" => {
                let t0 = mono_ns();
                let mut tcp = tokio::net::TcpStream::connect(addr.as_str()).await?;
                let mut left = total;
                while left > 0 {
                    let n = usize::try_from(left.min(CHUNK as u64))?;
                    tcp.write_all(&piece[..n]).await?;
                    left -= n as u64;
                }
                tcp.shutdown().await?;
                println!("{}", json!({ "t0": t0, "written": total }));
            }
            "quit" => break,
            other => println!(
                "{}",
                json!({ "error": format!("unknown command {other:?}") })
            ),
        }
    }
    Ok(())
}

/// `perf record` of each node (a, b) when `BENCH_FILES_PERF` names a directory.
fn start_profilers(round: usize, pids: [u32; 2]) -> anyhow::Result<Vec<std::process::Child>> {
    let Some(dir) = std::env::var_os("BENCH_FILES_PERF") else {
        return Ok(Vec::new());
    };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir)?;
    let mut children = Vec::new();
    for (name, pid) in ["a", "b"].into_iter().zip(pids) {
        let out = dir.join(format!("{name}-round{round}.data"));
        let child = std::process::Command::new("perf")
            .args(["record", "-q", "-F", "999", "-p", &pid.to_string(), "-o"])
            .arg(&out)
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("perf record (BENCH_FILES_PERF is set)")?;
        children.push(child);
    }
    Ok(children)
}

/// Ends the profilers by PID (SIGINT: perf writes its file and exits).
fn stop_profilers(children: Vec<std::process::Child>) -> anyhow::Result<()> {
    for child in &children {
        let pid = rustix::process::Pid::from_raw(i32::try_from(child.id())?)
            .context("a profiler without a pid")?;
        rustix::process::kill_process(pid, rustix::process::Signal::INT)?;
    }
    for mut child in children {
        child.wait()?;
    }
    Ok(())
}
