//! The benchmark's harness is right at a small size: every case finishes and
//! its counts are the ones the case implies. No timing is asserted here;
//! timing lives in `BENCHMARKS.md`.

use std::process::Command;

#[test]
fn every_case_runs_and_counts_what_it_did() {
    let out = Command::new(env!("CARGO_BIN_EXE_dirsync-bench"))
        .args(["--users", "300"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .filter(|l| l.starts_with("| 300 |"))
        .map(|l| l.split('|').map(str::trim).collect())
        .collect();
    assert_eq!(rows.len(), 3, "{stdout}");
    // Columns: users, case, wall, objects/s, requests, units, throttled,
    // written, read, created, updated, disabled, removed, RSS, status (after
    // the leading empty cell).
    let n = |row: &Vec<&str>, col: usize| row[col + 1].parse::<u64>().unwrap();
    assert!(rows.iter().all(|r| r[15] == "Succeeded"), "{stdout}");
    let (first, again, delta) = (&rows[0], &rows[1], &rows[2]);
    assert!(n(first, 9) > 250, "first sync creates the tenant: {stdout}");
    assert_eq!(n(again, 9) + n(again, 10) + n(again, 12), 0, "{stdout}");
    assert!(
        n(again, 7) < n(first, 7) / 10,
        "an unchanged re-sync writes almost nothing: {stdout}"
    );
    // 1% of 300 is the minimum of 3 changes: one rename, one disable, one
    // deletion, one new hire.
    assert_eq!(n(delta, 9), 1, "{stdout}");
    assert_eq!(n(delta, 12), 1, "{stdout}");
    assert!(
        n(delta, 4) <= n(first, 4),
        "a delta reads no more pages: {stdout}"
    );
}
