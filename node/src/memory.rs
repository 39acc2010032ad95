//! This process's memory for diagnostics: the resident set from the kernel, and what
//! the allocator holds when the binary's allocator can tell (the node's jemalloc
//! installs a probe at start; the library does not pick the allocator, so it asks).

use std::sync::OnceLock;

use api_types::MemoryDiagnostics;

/// What an allocator knows of itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes in live allocations.
    pub allocated: u64,
    /// Bytes of the allocator's pages that are resident.
    pub resident: u64,
}

/// Reads the allocator's figures; `None` when it cannot now.
pub type HeapProbe = fn() -> Option<HeapStats>;

static PROBE: OnceLock<HeapProbe> = OnceLock::new();

/// Called once by a binary whose global allocator can report itself. A second call is
/// ignored: the allocator cannot change while the process runs.
pub fn install_heap_probe(probe: HeapProbe) {
    let _first = PROBE.set(probe);
}

/// The figures now.
pub fn report() -> MemoryDiagnostics {
    let heap = PROBE.get().and_then(|probe| probe());
    MemoryDiagnostics {
        resident_bytes: resident_bytes().unwrap_or(0),
        heap_allocated_bytes: heap.map(|h| h.allocated),
        heap_resident_bytes: heap.map(|h| h.resident),
    }
}

/// `VmRSS` of `/proc/self/status`; `None` where there is no procfs.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    vm_rss_bytes(&status)
}

fn vm_rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kb.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resident_size_is_read_in_bytes() {
        let status =
            "Name:\tlanchat-node\nVmHWM:\t   40000 kB\nVmRSS:\t   28716 kB\nRssAnon:\t 9640 kB\n";
        assert_eq!(vm_rss_bytes(status), Some(28_716 * 1024));
        assert_eq!(vm_rss_bytes("Name:\tx\n"), None);
        assert_eq!(vm_rss_bytes("VmRSS:\tmany kB\n"), None);
    }

    #[test]
    fn this_process_has_a_resident_size() {
        assert!(report().resident_bytes > 0);
    }
}
