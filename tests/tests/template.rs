//! The SAM template: cfn-lint clean, and its table is the one the code uses.

use std::path::PathBuf;
use std::process::Command;

fn template() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../template.yaml")
}

#[test]
fn cfn_lint_passes() {
    let lint = std::env::var("DIRSYNC_CFN_LINT").unwrap_or_else(|_| {
        panic!(
            "DIRSYNC_CFN_LINT is not set: run the tests with `infra/test`, which installs cfn-lint"
        )
    });
    let out = Command::new(&lint)
        .arg(template())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {lint}: {e}"));
    assert!(
        out.status.success(),
        "cfn-lint found problems:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_template_table_has_the_keys_the_code_uses() {
    let text = std::fs::read_to_string(template()).unwrap();
    // The attribute names are fixed by the Table port; the index by the
    // DynamoDB adapter. A rename in one place without the other fails here.
    for name in dirsync_shared::store::table::RESERVED {
        assert!(
            text.contains(&format!("AttributeName: {name}")),
            "template lacks {name}"
        );
    }
    assert!(text.contains(&format!(
        "IndexName: {}",
        dirsync_shared::store::dynamo::GSI1
    )));
    assert!(
        text.contains("ProjectionType: ALL"),
        "gsi1 look-ups read whole items"
    );
    assert!(text.contains("PointInTimeRecoveryEnabled: true"));
}
