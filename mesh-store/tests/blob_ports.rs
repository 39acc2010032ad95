//! The file engine's port over the real blob store, on real files: what a serving node
//! holds and reads out, and a download chunk by chunk through the port — bad chunks
//! refused, duplicates noticed, the whole file checked at the end.

use lan_mesh::files::{BlobPort, BlobPortError, FileId, HeldChunks, ManifestHash, PutOutcome};
use mesh_store::BlobPorts;
use storage::blobs::{BlobStore, Download, CHUNK_SIZE};

fn content(len: usize) -> Vec<u8> {
    // Distinct chunks: a chunk in the wrong place is a mismatch.
    (0..len).map(|i| (i * 7 + i / 4093) as u8).collect()
}

#[tokio::test]
async fn a_file_goes_from_one_store_to_another_through_the_port() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (
        BlobStore::open(dirs.0.path()).unwrap(),
        BlobStore::open(dirs.1.path()).unwrap(),
    );
    let bytes = content(CHUNK_SIZE as usize * 3 + 1000);
    let (id, manifest) = a.import(&bytes[..]).unwrap();
    let file = FileId(*id.as_bytes());
    let hash = ManifestHash(*manifest.hash().as_bytes());
    let (server, client) = (BlobPorts::new(a), BlobPorts::new(b.clone()));

    // The serving side holds it all and reads every chunk; past the end is "not held".
    let held = server.holding(file).await.unwrap().expect("held");
    assert_eq!((held.manifest_hash, held.chunk_count), (hash, 4));
    assert_eq!(held.chunks, HeldChunks::Complete);
    let chunks: Vec<Vec<u8>> = {
        let mut v = Vec::new();
        for i in 0..4 {
            v.push(server.read_chunk(file, i).await.unwrap().expect("chunk"));
        }
        v
    };
    assert_eq!(chunks.concat(), bytes);
    assert_eq!(server.read_chunk(file, 4).await.unwrap(), None);

    // The receiver knows nothing until it has the manifest (from the signed message).
    let unknown = FileId([9; 32]);
    assert_eq!(client.holding(unknown).await.unwrap(), None);
    assert_eq!(
        client.begin(file, hash).await,
        Err(BlobPortError::NoManifest(file))
    );
    match b.begin_download(manifest.clone()).unwrap() {
        Download::Partial(partial) => drop(partial),
        Download::Complete => panic!("nothing was downloaded yet"),
    }
    assert_eq!(client.begin(file, hash).await.unwrap(), vec![0, 1, 2, 3]);

    // A chunk in the wrong place is refused and nothing is stored; the right one is
    // stored once, then served by the receiver too.
    assert_eq!(
        client.put_chunk(file, 0, chunks[1].clone()).await.unwrap(),
        PutOutcome::Mismatch
    );
    assert_eq!(client.read_chunk(file, 0).await.unwrap(), None);
    assert_eq!(
        client.put_chunk(file, 0, chunks[0].clone()).await.unwrap(),
        PutOutcome::Stored
    );
    assert_eq!(
        client.put_chunk(file, 0, chunks[0].clone()).await.unwrap(),
        PutOutcome::Duplicate
    );
    let partial = client.holding(file).await.unwrap().expect("held");
    assert_eq!(partial.chunks, HeldChunks::Some(vec![0]));
    assert_eq!(
        client.read_chunk(file, 0).await.unwrap().as_deref(),
        Some(&chunks[0][..])
    );
    assert_eq!(client.begin(file, hash).await.unwrap(), vec![1, 2, 3]);

    for (i, chunk) in chunks.iter().enumerate().skip(1) {
        let outcome = client.put_chunk(file, i as u32, chunk.clone()).await;
        assert_eq!(outcome.unwrap(), PutOutcome::Stored);
    }
    client.finish(file).await.unwrap();
    // Finishing again is fine: the content is here.
    client.finish(file).await.unwrap();
    let done = client.holding(file).await.unwrap().expect("held");
    assert_eq!(done.chunks, HeldChunks::Complete);
    let mut copy = Vec::new();
    std::io::Read::read_to_end(
        &mut b.open_content(id).unwrap().expect("complete"),
        &mut copy,
    )
    .unwrap();
    assert_eq!(copy, bytes);
}
