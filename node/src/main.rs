use std::process::ExitCode;

use clap::Parser;

/// jemalloc rather than glibc's malloc for the node: after a burst (a flood of
/// connections or datagrams, a big sync) glibc keeps the freed memory resident,
/// scattered over its arenas, for good; jemalloc's background thread gives it back over
/// about 10 s (docs/SECURITY.md § 7, `lan_floods` checks it). Here, not in the library:
/// the window process (`lanchat window-view`) links the library too and allocates
/// little; jemalloc's arenas would cost it about 3 MB.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    lanchat_node::memory::install_heap_probe(jemalloc_stats);
    lanchat_node::prepare_process();
    lanchat_node::logging::init();
    let cli = lanchat_node::cli::Cli::parse();
    match lanchat_node::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => lanchat_node::exit_with(&e),
    }
}

/// jemalloc's own figures (its statistics are cached until the epoch is advanced).
fn jemalloc_stats() -> Option<lanchat_node::memory::HeapStats> {
    use tikv_jemalloc_ctl::{epoch, stats};
    epoch::advance().ok()?;
    let allocated = stats::allocated::read().ok()?;
    let resident = stats::resident::read().ok()?;
    Some(lanchat_node::memory::HeapStats {
        allocated: u64::try_from(allocated).ok()?,
        resident: u64::try_from(resident).ok()?,
    })
}

#[cfg(test)]
mod tests {
    /// `.cargo/config.toml` gives jemalloc one arena when it is built; without it a
    /// flood's survivors pin pages in eight (docs/SECURITY.md § 7).
    #[test]
    fn the_allocator_is_built_with_one_arena() {
        if std::env::var_os("_RJEM_MALLOC_CONF").is_some() {
            return; // overridden at run time on purpose
        }
        assert_eq!(tikv_jemalloc_ctl::opt::narenas::read().unwrap(), 1);
    }

    #[test]
    fn the_heap_probe_reads_jemalloc() {
        let stats = super::jemalloc_stats().expect("jemalloc's statistics");
        assert!(stats.resident >= stats.allocated && stats.allocated > 0);
    }
}
