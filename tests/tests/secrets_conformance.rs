//! The secret store port, on Secrets Manager (the emulator) and locally.

mod common;

use dirsync_shared::domain::SecretRef;
use dirsync_shared::secrets::{LocalSecretStore, SecretError, SecretStore, SecretValue, Stage};

fn unique(prefix: &str) -> SecretRef {
    format!("dirsync/test/{prefix}-{}", uuid::Uuid::new_v4().simple())
        .parse()
        .unwrap()
}

async fn conformance(store: &dyn SecretStore) {
    let name = unique("pw");
    assert!(store.get(&name, Stage::Current).await.unwrap().is_none());
    match store.current(&name).await {
        Err(SecretError::NotFound { name: n, .. }) => assert_eq!(n, name.as_str()),
        other => panic!("expected not found, got {other:?}"),
    }
    store.put(&name, SecretValue::new("first")).await.unwrap();
    assert_eq!(store.current(&name).await.unwrap().expose(), "first");
    assert!(store.get(&name, Stage::Previous).await.unwrap().is_none());
    // The password-refresh flow: a new value becomes current, the old one
    // previous.
    store.put(&name, SecretValue::new("second")).await.unwrap();
    assert_eq!(store.current(&name).await.unwrap().expose(), "second");
    assert_eq!(
        store
            .get(&name, Stage::Previous)
            .await
            .unwrap()
            .unwrap()
            .expose(),
        "first"
    );
    assert!(store.get(&name, Stage::Pending).await.unwrap().is_none());
    store.delete(&name).await.unwrap();
    assert!(store.get(&name, Stage::Current).await.unwrap().is_none());
    store.delete(&name).await.unwrap();
}

#[tokio::test]
async fn secrets_manager_behaves_like_the_port_says() {
    conformance(&common::secrets_manager()).await;
}

#[tokio::test]
async fn the_local_store_behaves_the_same() {
    conformance(&LocalSecretStore::in_memory()).await;
    let dir = tempfile::tempdir().unwrap();
    conformance(&LocalSecretStore::with_dir(dir.path())).await;
}

#[tokio::test]
async fn a_deleted_secret_can_be_stored_again() {
    let store = common::secrets_manager();
    let name = unique("again");
    store.put(&name, SecretValue::new("one")).await.unwrap();
    store.delete(&name).await.unwrap();
    store.put(&name, SecretValue::new("two")).await.unwrap();
    assert_eq!(store.current(&name).await.unwrap().expose(), "two");
}

async fn rotation_stages(store: &dyn SecretStore) {
    let name = unique("cert");
    store.put(&name, SecretValue::new("v1")).await.unwrap();
    let token = uuid::Uuid::new_v4().to_string();
    store
        .put_pending(&name, &token, SecretValue::new("v2"))
        .await
        .unwrap();
    // Repeating the step with the same token and value changes nothing.
    store
        .put_pending(&name, &token, SecretValue::new("v2"))
        .await
        .unwrap();
    assert_eq!(
        store.current(&name).await.unwrap().expose(),
        "v1",
        "pending is not current yet"
    );
    assert_eq!(
        store
            .get(&name, Stage::Pending)
            .await
            .unwrap()
            .unwrap()
            .expose(),
        "v2"
    );
    assert_eq!(
        store
            .get_version(&name, &token)
            .await
            .unwrap()
            .unwrap()
            .expose(),
        "v2"
    );
    let stages = store.version_stages(&name).await.unwrap();
    assert!(
        stages
            .iter()
            .any(|(id, s)| *id == token && s.contains(&Stage::Pending)),
        "{stages:?}"
    );
    store.promote(&name, &token).await.unwrap();
    store.promote(&name, &token).await.unwrap();
    assert_eq!(store.current(&name).await.unwrap().expose(), "v2");
    assert_eq!(
        store
            .get(&name, Stage::Previous)
            .await
            .unwrap()
            .unwrap()
            .expose(),
        "v1"
    );
    assert!(store.get(&name, Stage::Pending).await.unwrap().is_none());
    store.delete(&name).await.unwrap();
}

#[tokio::test]
async fn rotation_stages_behave_alike_on_both_stores() {
    rotation_stages(&common::secrets_manager()).await;
    rotation_stages(&LocalSecretStore::in_memory()).await;
}
