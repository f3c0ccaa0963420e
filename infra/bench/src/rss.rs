//! Peak resident memory per case, for the engine's process and the
//! simulator's alike (Linux only).
//!
//! A reset starts from the current RSS, so a case's peak also holds what
//! earlier cases of the same process left resident: the main store's page
//! cache (open until the delta round) and memory the allocator kept. The
//! first engine case's figure is clean; `--cases` runs any other alone for
//! its own.

/// Starts a new high-water mark: writing `5` to `clear_refs` resets
/// `VmHWM` to the current RSS, so the next reading is this case's peak
/// rather than the process's lifetime peak.
pub fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// `VmHWM` in MiB (0 where `/proc` is not there).
pub fn peak_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}
