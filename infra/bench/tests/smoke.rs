//! The benchmark's harness is right at a small size: every case finishes and
//! its counts are the ones the case implies. No timing is asserted here;
//! timing lives in `BENCHMARKS.md`.

use std::collections::HashMap;
use std::process::Command;

/// The table's rows, each as column name → cell, in the order printed.
fn bench(args: &[&str]) -> (Vec<HashMap<String, String>>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dirsync-bench"))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cells = |l: &str| -> Vec<String> {
        let l = l.trim().trim_start_matches('|').trim_end_matches('|');
        l.split('|').map(|c| c.trim().to_owned()).collect()
    };
    let mut lines = stdout.lines().filter(|l| l.starts_with('|'));
    let header = cells(lines.next().expect("a table"));
    let rows = lines
        .skip(1)
        .map(|l| header.iter().cloned().zip(cells(l)).collect())
        .collect();
    (rows, stdout)
}

/// The row whose case starts with `name`.
fn case<'a>(rows: &'a [HashMap<String, String>], name: &str) -> &'a HashMap<String, String> {
    rows.iter()
        .find(|r| r["case"].starts_with(name))
        .unwrap_or_else(|| panic!("no {name:?} row"))
}

/// A numeric cell.
fn n(row: &HashMap<String, String>, column: &str) -> u64 {
    row[column]
        .parse()
        .unwrap_or_else(|_| panic!("{column}: {:?}", row[column]))
}

/// How many invocations the continuation case's note reports.
fn invocations(row: &HashMap<String, String>) -> u64 {
    row["notes"]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("notes: {:?}", row["notes"]))
}

#[test]
fn every_case_runs_and_counts_what_it_did() {
    let (rows, out) = bench(&["--users", "300", "--latency-ms", "20"]);
    assert_eq!(rows.len(), 8, "{out}");
    assert!(rows.iter().all(|r| r["users"] == "300"), "{out}");

    // The floors read every page once; at this size that is the minimum
    // the engine must match exactly.
    let baseline = case(&rows, "baseline: fetch only");
    let minimum = n(baseline, "minimum requests");
    assert_eq!(n(baseline, "Graph requests"), minimum, "{out}");
    assert_eq!(minimum, 2, "300 users fit one page per stream: {out}");
    for name in ["baseline: fetch + map", "overlap: fetch + map"] {
        assert_eq!(n(case(&rows, name), "Graph requests"), minimum, "{out}");
    }
    // The reads alone wait out the latency they were given: at least 1×.
    let reads = &case(&rows, "overlap: fetch + map")["notes"];
    let ratio: f64 = reads
        .split('×')
        .next()
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("notes: {reads:?}"));
    assert!(ratio >= 1.0, "{out}");

    for name in [
        "first full sync",
        "unchanged",
        "overlap: first",
        "continuation",
    ] {
        let row = case(&rows, name);
        assert_eq!(row["status"], "Succeeded", "{name}: {out}");
        assert_eq!(n(row, "Graph requests"), minimum, "{name}: {out}");
        // Both processes' memory is read and reported.
        assert!(n(row, "engine peak RSS MiB") > 0, "{out}");
        assert!(n(row, "sim peak RSS MiB") > 0, "{out}");
    }
    let first = case(&rows, "first full sync");
    assert!(n(first, "created") > 250, "{out}");
    assert!(
        n(first, "directory items written") > n(first, "created"),
        "{out}"
    );
    for name in ["overlap: first", "continuation"] {
        assert_eq!(
            n(case(&rows, name), "created"),
            n(first, "created"),
            "a fresh store: {out}"
        );
    }
    assert_eq!(invocations(case(&rows, "continuation")), 1, "{out}");

    let again = case(&rows, "unchanged");
    assert_eq!(n(again, "directory items written"), 0, "{out}");
    assert_eq!(
        n(again, "created") + n(again, "updated") + n(again, "removed"),
        0,
        "{out}"
    );

    // 1% of 300 is the minimum of 3 changes: one rename, one disable, one
    // deletion, one new hire.
    let delta = case(&rows, "delta");
    assert_eq!(delta["status"], "Succeeded", "{out}");
    assert_eq!(n(delta, "created"), 1, "{out}");
    assert_eq!(n(delta, "removed"), 1, "{out}");
    assert!(n(delta, "Graph requests") <= minimum, "{out}");
}

/// At 1,000 users the users stream has two pages. Each page takes longer
/// than an invocation, so every invocation applies one page per stream and
/// the run needs two. No applied page is read again; a page the source had
/// asked for ahead when an invocation stopped is asked for again by the
/// next (each invocation reads through a source of its own, as on Lambda):
/// at most one per stream and pause.
#[test]
fn a_full_sync_continues_across_invocations() {
    let (rows, out) = bench(&[
        "--users",
        "1000",
        "--cases",
        "baseline,continuation",
        "--latency-ms",
        "500",
        "--invocation-s",
        "0.3",
    ]);
    assert_eq!(rows.len(), 2, "{out}");
    let row = case(&rows, "continuation");
    assert_eq!(row["status"], "Succeeded", "{out}");
    let pauses = invocations(row) - 1;
    assert!(pauses >= 1, "{out}");
    let (requests, minimum) = (n(row, "Graph requests"), n(row, "minimum requests"));
    assert!(requests >= minimum, "{out}");
    assert!(requests <= minimum + 2 * pauses, "{out}");
}
