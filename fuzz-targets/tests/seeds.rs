//! The seeds are valid — each reaches its target's accepting path — and the seed
//! corpus committed under `fuzz/corpus/` is what they encode.

use std::path::PathBuf;

use fuzz_targets::seeds::seeds;
use fuzz_targets::TARGETS;
use lan_mesh::discovery::Packet;
use lan_mesh::envelope::{Envelope, RelayPayload, SyncPayload, KIND_GROUP_RELAY, KIND_GROUP_SYNC};
use lan_mesh::transport::Frame;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

#[test]
fn every_target_has_seeds_and_they_run_clean() {
    for (name, body) in TARGETS {
        let all = seeds(name);
        assert!(all.len() >= 3, "{name}: {} seeds", all.len());
        for seed in &all {
            body(seed);
        }
    }
}

#[test]
fn discovery_and_frame_seeds_decode() {
    for seed in seeds("discovery_packet") {
        let decoded = Packet::decode(&seed).unwrap();
        if let Some(tag) = decoded.tag {
            assert!(fuzz_targets::discovery::key().verify(decoded.signed, tag));
        }
    }
    for seed in seeds("link_frame") {
        Frame::decode(&seed).unwrap();
    }
}

#[test]
fn envelope_seeds_open_and_decode() {
    use fuzz_targets::envelope::{local, peer, peer_keys};
    let mut kinds = Vec::new();
    for seed in seeds("envelope") {
        let (mode, rest) = seed.split_first().unwrap();
        if mode % 2 != 0 {
            continue;
        }
        let envelope = Envelope::open(rest, &peer(), &local()).unwrap();
        match envelope.kind.as_str() {
            KIND_GROUP_SYNC => drop(envelope.group_sync().unwrap()),
            KIND_GROUP_RELAY => drop(envelope.group_relay().unwrap()),
            _ => drop(envelope.verified_effect(&peer_keys().public()).unwrap()),
        }
        kinds.push(envelope.kind);
    }
    kinds.sort();
    kinds.dedup();
    assert_eq!(
        kinds.len(),
        fuzz_targets::envelope::KINDS.len(),
        "{kinds:?}"
    );
}

#[test]
fn sync_seeds_decode() {
    for seed in seeds("sync_payload") {
        let (mode, rest) = seed.split_first().unwrap();
        if mode % 2 == 0 {
            serde_json::from_slice::<SyncPayload>(rest)
                .unwrap()
                .decode()
                .unwrap();
        } else {
            serde_json::from_slice::<RelayPayload>(rest)
                .unwrap()
                .decode()
                .unwrap();
        }
    }
}

#[test]
fn settings_cidr_and_api_seeds_are_accepted() {
    use api_types::settings::NodeIdRule;
    use api_types::{NodeId, Settings};
    let node: NodeId = ulid::Ulid::from(7u128).to_string().parse().unwrap();
    let [file, patch, ui] = <[Vec<u8>; 3]>::try_from(seeds("settings_json")).unwrap();
    Settings::from_document(&serde_json::from_slice(&file).unwrap()).unwrap();
    for doc in [patch, ui] {
        Settings::defaults(node.clone())
            .patched(&serde_json::from_slice(&doc).unwrap(), NodeIdRule::ReadOnly)
            .unwrap();
    }
    let cidrs = seeds("cidr");
    let first = std::str::from_utf8(&cidrs[0]).unwrap();
    assert_eq!(
        first.parse::<api_types::Cidr>().unwrap().to_string(),
        "10.1.2.0/24"
    );
    let bodies = seeds("api_bodies");
    let send: api_types::SendMessage = serde_json::from_slice(&bodies[0]).unwrap();
    api_types::limits::check_body(&send.text).unwrap();
    let set: api_types::SetPresence = serde_json::from_slice(&bodies[4]).unwrap();
    set.chosen().unwrap();
}

#[test]
fn file_message_seeds_parse_decode_and_assemble() {
    use api_types::files::FILE_MESSAGE_PREFIX;
    use api_types::FileContent;
    use storage::blobs::{Manifest, ManifestError};
    let all = seeds("file_message");
    let (texts, manifests, pages): (Vec<_>, Vec<_>, Vec<_>) = (
        all.iter().filter(|s| s[0] == 0).collect(),
        all.iter().filter(|s| s[0] == 1).collect(),
        all.iter().filter(|s| s[0] == 2).collect(),
    );
    let text = |seed: &[u8]| String::from_utf8(seed[1..].to_vec()).unwrap();
    let sent = FileContent::parse(&text(texts[0])).unwrap();
    assert_eq!(sent.files[1].display_path(), "photos/2026/a.png");
    FileContent::parse(&format!("{FILE_MESSAGE_PREFIX}{}", text(texts[1]))).unwrap();
    assert!(
        FileContent::parse(&text(texts[2])).is_err(),
        "a folder path with .."
    );
    assert!(FileContent::parse(&text(texts[3])).is_err());
    // The manifests the message's hashes name are the ones the seeds hold.
    let hello = Manifest::decode(&manifests[1][1..]).unwrap();
    assert_eq!(hello.hash().to_string(), sent.files[0].manifest);
    assert_eq!(hello.file_id().to_string(), sent.files[0].file_id);
    for manifest in &manifests[..3] {
        Manifest::decode(&manifest[1..]).unwrap();
    }
    assert!(matches!(
        Manifest::decode(&manifests[3][1..]),
        Err(ManifestError::Truncated { .. })
    ));
    let outcomes: Vec<_> = pages
        .iter()
        .map(|seed| fuzz_targets::files::assembled(&seed[1..]).unwrap())
        .collect();
    assert_eq!(outcomes[0].as_ref().unwrap().chunk_count(), 5);
    assert_eq!(outcomes[1].as_ref().unwrap().chunk_count(), 3);
    assert_eq!(outcomes[2].as_ref().unwrap().size(), 0);
    assert!(matches!(
        outcomes[3],
        Err(ManifestError::HashMismatch { .. })
    ));
}

/// The committed corpus holds at least the seeds (the fuzzer may add files; they
/// must run clean too).
#[test]
fn the_committed_corpus_holds_the_seeds_and_runs_clean() {
    for (name, body) in TARGETS {
        let dir = corpus_dir(name);
        let mut files: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
            .collect();
        files.sort();
        for file in &files {
            body(file);
        }
        for (i, seed) in seeds(name).iter().enumerate() {
            // The handshake's recorded message 1 has a fresh ephemeral key each time.
            if name == "noise_handshake" && i == 0 {
                continue;
            }
            assert!(
                files.contains(seed),
                "{name}: seed {i} is not in {} — run `cargo test -p fuzz-targets --test seeds -- --ignored`",
                dir.display()
            );
        }
    }
}

/// Writes the seeds into `fuzz/corpus/<target>/seed-<n>`.
#[test]
#[ignore = "writes fuzz/corpus; run by hand after changing the seeds"]
fn write_the_seed_corpus() {
    for (name, _) in TARGETS {
        let dir = corpus_dir(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, seed) in seeds(name).iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), seed).unwrap();
        }
    }
}
