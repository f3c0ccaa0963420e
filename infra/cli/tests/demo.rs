//! `dirsync demo`, run as a person would run it.

use std::process::Command;

#[test]
fn the_demo_walks_every_step_and_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dirsync"))
        .args(["demo", "--users", "400", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "callback: HTTP 302 (SignIn)",
        "sign-in: HTTP 200 (Granted)",
        "finishSecret: done",
        "the app now holds 2 keys",
        "1 job(s) enqueued",
        "Succeeded Full run",
        "Succeeded Delta run: 1 created, 0 updated, 0 enabled, 1 disabled, 1 removed",
        "Staged Full run",
        "nothing was removed",
        "Demo finished",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    assert!(
        !stdout.contains("\"_aws\""),
        "no metrics noise outside Lambda"
    );
    assert!(dir.path().join("dirsync-demo.db").exists());
}

#[test]
fn a_bad_size_is_refused_with_the_range() {
    let out = Command::new(env!("CARGO_BIN_EXE_dirsync"))
        .args(["demo", "--users", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("between 10 and 200000"));
}
