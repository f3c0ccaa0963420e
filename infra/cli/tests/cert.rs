//! `dirsync cert bootstrap`, run as an operator would.

use std::process::Command;

fn dirsync() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dirsync"))
}

#[test]
fn bootstrap_stores_the_key_and_writes_only_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    let out = dir.path().join("app.pem");
    let run = dirsync()
        .args([
            "cert",
            "bootstrap",
            "--secret",
            "dirsync-prod/app-certificate",
            "--local",
            "--secrets-dir",
        ])
        .arg(&secrets)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains("Upload certificate") && stdout.contains("Thumbprint"),
        "{stdout}"
    );
    let pem = std::fs::read_to_string(&out).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(!pem.contains("PRIVATE KEY"), "the upload file holds no key");
    let stored: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(secrets.join("dirsync-prod/app-certificate")).unwrap(),
    )
    .unwrap();
    assert!(
        stored["private_key_pem"]
            .as_str()
            .unwrap()
            .contains("PRIVATE KEY")
    );
    assert_eq!(stored["certificate_pem"].as_str().unwrap(), pem);

    // A second bootstrap would orphan the uploaded certificate: refused.
    let again = dirsync()
        .args([
            "cert",
            "bootstrap",
            "--secret",
            "dirsync-prod/app-certificate",
            "--local",
            "--secrets-dir",
        ])
        .arg(&secrets)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
}

#[test]
fn bad_arguments_say_what_to_fix() {
    let run = dirsync()
        .args(["cert", "bootstrap", "--secret", "{\"not\": \"a name\"}"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("name the secret"));
}
