//! Memory figures of this process and this machine (Linux `/proc`; `None` elsewhere), for
//! `moescope bench`, `info` and the app's warnings.

/// A `kB` field of a `/proc` file (`VmRSS:` of `/proc/self/status`, `MemTotal:` of
/// `/proc/meminfo`) in bytes.
fn proc_field_bytes(file: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let kb: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// This process's resident memory now.
pub fn resident_bytes() -> Option<u64> {
    proc_field_bytes("/proc/self/status", "VmRSS:")
}

/// This process's peak resident memory.
pub fn peak_resident_bytes() -> Option<u64> {
    proc_field_bytes("/proc/self/status", "VmHWM:")
}

/// The machine's RAM.
pub fn total_ram_bytes() -> Option<u64> {
    proc_field_bytes("/proc/meminfo", "MemTotal:")
}

/// What opening a checkpoint of `weight_bytes` on the CPU costs in memory, in words: weights are
/// mapped, so resident memory grows with the pages a pass touches up to the file's size; a file
/// larger than RAM still runs, with pages read back from disk on every pass.
pub fn cpu_residency_note(weight_bytes: u64) -> String {
    match total_ram_bytes() {
        Some(ram) if weight_bytes > ram => format!(
            "mapped from the file: {} of weights is more than this machine's {} of RAM — it runs, but every pass reads what does not fit from disk (slow)",
            crate::units::human_bytes(weight_bytes),
            crate::units::human_bytes(ram)
        ),
        Some(ram) => format!(
            "mapped from the file: resident grows to about {} after a pass ({:.1} % of {} RAM)",
            crate::units::human_bytes(weight_bytes),
            100.0 * weight_bytes as f64 / ram as f64,
            crate::units::human_bytes(ram)
        ),
        None => format!(
            "mapped from the file: resident grows to about {} after a pass",
            crate::units::human_bytes(weight_bytes)
        ),
    }
}
