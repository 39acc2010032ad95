use std::path::Path;

fn main() {
    // The UI is embedded from ui/dist (built by scripts/build-ui.sh). When it has not
    // been built yet the node still compiles and serves a page that says so, so that
    // `cargo check`/`clippy` work on a fresh clone.
    let dist = Path::new("../ui/dist");
    if !dist.exists() {
        if let Err(e) = std::fs::create_dir_all(dist) {
            println!("cargo::warning=cannot create {}: {e}", dist.display());
        }
    }
    println!("cargo::rerun-if-changed=../ui/dist");
}
