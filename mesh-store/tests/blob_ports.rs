//! The file engine's port over the real blob store, on real files: what a serving node
//! holds and reads out, and a download chunk by chunk through the port — bad chunks
//! refused, duplicates noticed, the whole file checked at the end — and a manifest
//! served page by page and assembled in another store from nothing but the file
//! message's descriptor.

use lan_mesh::files::{
    BlobPort, BlobPortError, FileDescriptor, FileId, HeldChunks, ManifestHash, ManifestOutcome,
    PutOutcome,
};
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

/// Chunk hashes per page in these tests: a ten-chunk file has three pages.
const PER_PAGE: u32 = 4;

fn read_all(store: &BlobStore, id: storage::blobs::FileId) -> Vec<u8> {
    let mut copy = Vec::new();
    std::io::Read::read_to_end(
        &mut store.open_content(id).expect("readable").expect("complete"),
        &mut copy,
    )
    .expect("read");
    copy
}

#[tokio::test]
async fn a_manifest_travels_page_by_page_then_the_file_chunk_by_chunk() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (
        BlobStore::open(dirs.0.path()).unwrap(),
        BlobStore::open(dirs.1.path()).unwrap(),
    );
    let bytes = content(CHUNK_SIZE as usize * 9 + 1000);
    let (id, manifest) = a.import(&bytes[..]).unwrap();
    let file = FileDescriptor {
        file_id: FileId(*id.as_bytes()),
        manifest_hash: ManifestHash(*manifest.hash().as_bytes()),
        size: manifest.size(),
        chunk_size: manifest.chunk_size(),
    };
    let server = BlobPorts::with_page_hashes(a, PER_PAGE);
    let client = BlobPorts::with_page_hashes(b.clone(), PER_PAGE);

    // Pages of the stored manifest; none past the end nor under another hash.
    let mut pages = Vec::new();
    for i in 0..3 {
        let page = server
            .manifest_page(file.file_id, file.manifest_hash, i)
            .await
            .unwrap()
            .expect("page");
        assert_eq!(page.page_count, 3);
        pages.push(page.bytes);
    }
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        [128, 128, 64]
    );
    let none = server.manifest_page(file.file_id, file.manifest_hash, 3);
    assert_eq!(none.await.unwrap(), None);
    let other = server.manifest_page(file.file_id, ManifestHash([0; 32]), 0);
    assert_eq!(other.await.unwrap(), None);

    // The receiver has only the descriptor.
    assert_eq!(
        client.begin(file.file_id, file.manifest_hash).await,
        Err(BlobPortError::NoManifest(file.file_id))
    );
    assert_eq!(
        client.begin_manifest(file).await.unwrap(),
        ManifestOutcome::Missing(vec![0, 1, 2])
    );
    // Pages that do not fit are refused and change nothing.
    for (page, count, bytes) in [
        (2, 3, pages[0].clone()),
        (0, 4, pages[0].clone()),
        (3, 3, pages[2].clone()),
    ] {
        let outcome = client.put_manifest_page(file, page, count, bytes).await;
        assert_eq!(outcome.unwrap(), ManifestOutcome::BadPage);
    }
    // A lying page (the right length): found when the last page is in.
    let mut lie = pages[1].clone();
    lie[0] ^= 1;
    let put = |page: u32, bytes: &Vec<u8>| client.put_manifest_page(file, page, 3, bytes.clone());
    assert_eq!(
        put(0, &pages[0]).await.unwrap(),
        ManifestOutcome::Missing(vec![1, 2])
    );
    assert_eq!(
        put(1, &lie).await.unwrap(),
        ManifestOutcome::Missing(vec![2])
    );
    assert_eq!(put(2, &pages[2]).await.unwrap(), ManifestOutcome::Mismatch);
    assert_eq!(
        client.begin(file.file_id, file.manifest_hash).await,
        Err(BlobPortError::NoManifest(file.file_id)),
        "nothing stored"
    );
    // Assembled again, in any order, from honest pages: stored.
    assert_eq!(
        client.begin_manifest(file).await.unwrap(),
        ManifestOutcome::Missing(vec![0, 1, 2])
    );
    assert_eq!(
        put(2, &pages[2]).await.unwrap(),
        ManifestOutcome::Missing(vec![0, 1])
    );
    assert_eq!(
        put(0, &pages[0]).await.unwrap(),
        ManifestOutcome::Missing(vec![1])
    );
    assert_eq!(put(1, &pages[1]).await.unwrap(), ManifestOutcome::Complete);
    assert_eq!(
        client.begin_manifest(file).await.unwrap(),
        ManifestOutcome::Complete
    );
    assert_eq!(
        client
            .begin(file.file_id, file.manifest_hash)
            .await
            .unwrap(),
        (0..10).collect::<Vec<u32>>()
    );
    // The receiver serves the manifest it assembled, before any chunk is in.
    let again = client.manifest_page(file.file_id, file.manifest_hash, 1);
    assert_eq!(again.await.unwrap().expect("page").bytes, pages[1]);

    for i in 0..10 {
        let chunk = server
            .read_chunk(file.file_id, i)
            .await
            .unwrap()
            .expect("chunk");
        let outcome = client.put_chunk(file.file_id, i, chunk).await.unwrap();
        assert_eq!(outcome, PutOutcome::Stored);
    }
    client.finish(file.file_id).await.unwrap();
    assert_eq!(read_all(&b, id), bytes);
}

#[tokio::test]
async fn an_empty_file_needs_no_page_and_no_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    let source_dir = tempfile::tempdir().unwrap();
    let (id, manifest) = BlobStore::open(source_dir.path())
        .unwrap()
        .import(&b""[..])
        .unwrap();
    let file = FileDescriptor {
        file_id: FileId(*id.as_bytes()),
        manifest_hash: ManifestHash(*manifest.hash().as_bytes()),
        size: 0,
        chunk_size: CHUNK_SIZE,
    };
    let port = BlobPorts::new(store.clone());
    assert_eq!(
        port.begin_manifest(file).await.unwrap(),
        ManifestOutcome::Complete
    );
    assert_eq!(
        port.begin(file.file_id, file.manifest_hash).await.unwrap(),
        Vec::<u32>::new()
    );
    port.finish(file.file_id).await.unwrap();
    assert_eq!(read_all(&store, id), b"");
}

#[tokio::test]
async fn a_descriptor_storage_would_refuse_allocates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = BlobPorts::new(BlobStore::open(dir.path()).unwrap());
    for (size, chunk_size) in [(1u64 << 40, CHUNK_SIZE), (10, 1000), (10, 0)] {
        let file = FileDescriptor {
            file_id: FileId([1; 32]),
            manifest_hash: ManifestHash([2; 32]),
            size,
            chunk_size,
        };
        assert!(
            matches!(
                port.begin_manifest(file).await,
                Err(BlobPortError::Refused(..))
            ),
            "{size} {chunk_size}"
        );
    }
}

#[tokio::test]
async fn a_batch_stores_its_good_chunks_together_and_names_each_outcome() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (
        BlobStore::open(dirs.0.path()).unwrap(),
        BlobStore::open(dirs.1.path()).unwrap(),
    );
    let bytes = content(CHUNK_SIZE as usize * 5 + 10);
    let (id, manifest) = a.import(&bytes[..]).unwrap();
    let file = FileId(*id.as_bytes());
    let hash = ManifestHash(*manifest.hash().as_bytes());
    let (server, client) = (BlobPorts::new(a), BlobPorts::new(b.clone()));
    let mut chunks = Vec::new();
    for i in 0..6 {
        chunks.push(server.read_chunk(file, i).await.unwrap().expect("chunk"));
    }
    match b.begin_download(manifest.clone()).unwrap() {
        Download::Partial(partial) => drop(partial),
        Download::Complete => panic!("nothing was downloaded yet"),
    }
    assert_eq!(
        client.begin(file, hash).await.unwrap(),
        vec![0, 1, 2, 3, 4, 5]
    );
    assert_eq!(
        client.put_chunk(file, 1, chunks[1].clone()).await.unwrap(),
        PutOutcome::Stored
    );

    // Two bad chunks among good ones and a duplicate: each named, the good ones stored.
    let batch = vec![
        (0, chunks[0].clone()),
        (2, chunks[3].clone()),
        (1, chunks[1].clone()),
        (3, chunks[3].clone()),
        (4, vec![0; 17]),
    ];
    assert_eq!(
        client.put_chunks(file, batch).await.unwrap(),
        [
            PutOutcome::Stored,
            PutOutcome::Mismatch,
            PutOutcome::Duplicate,
            PutOutcome::Stored,
            PutOutcome::Mismatch,
        ]
    );
    assert_eq!(client.begin(file, hash).await.unwrap(), vec![2, 4, 5]);
    let batch = vec![
        (2, chunks[2].clone()),
        (4, chunks[4].clone()),
        (5, chunks[5].clone()),
    ];
    assert_eq!(
        client.put_chunks(file, batch).await.unwrap(),
        [PutOutcome::Stored; 3]
    );
    client.finish(file).await.unwrap();
    let mut copy = Vec::new();
    std::io::Read::read_to_end(
        &mut b.open_content(id).unwrap().expect("complete"),
        &mut copy,
    )
    .unwrap();
    assert_eq!(copy, bytes);
}
