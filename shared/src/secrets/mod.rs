//! The `SecretStore` port: where passwords, client secrets, service-account
//! keys and the app certificate live. Production: Secrets Manager (with its
//! version stages); local runs and tests: [`LocalSecretStore`].
//!
//! A [`SecretValue`] never prints itself: `Debug` and `Display` show
//! `<redacted>`, so a secret cannot reach a log or an error by accident.

mod aws;

pub use aws::SecretsManagerStore;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::domain::SecretRef;

/// Secrets Manager's version stages. Rotation writes `Pending`, tests it,
/// then promotes it to `Current`; the old current becomes `Previous`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    Current,
    Previous,
    Pending,
}

impl Stage {
    pub fn label(self) -> &'static str {
        match self {
            Stage::Current => "AWSCURRENT",
            Stage::Previous => "AWSPREVIOUS",
            Stage::Pending => "AWSPENDING",
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used (a bind, a form field).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SecretError {
    #[error("secret {name:?} does not exist; {hint}")]
    NotFound { name: String, hint: String },
    #[error("the secret store refused access to {name:?}: {detail}")]
    Denied { name: String, detail: String },
    #[error("the secret store failed: {0}")]
    Backend(String),
}

#[async_trait]
pub trait SecretStore: Send + Sync {
    /// The value at a stage, `None` if the secret has no version there.
    async fn get(&self, name: &SecretRef, stage: Stage)
    -> Result<Option<SecretValue>, SecretError>;

    /// Stores a new current version (the old one becomes previous).
    async fn put(&self, name: &SecretRef, value: SecretValue) -> Result<(), SecretError>;

    /// Removes the secret and all its versions.
    async fn delete(&self, name: &SecretRef) -> Result<(), SecretError>;

    /// Drops any copy of the secret this process holds, so that the next
    /// read sees what another process wrote (a value was refused as stale).
    /// Stores that read through every time have nothing to drop.
    fn forget(&self, _name: &SecretRef) {}

    /// The value of one version, by its id (a rotation's token).
    async fn get_version(
        &self,
        name: &SecretRef,
        version: &str,
    ) -> Result<Option<SecretValue>, SecretError>;

    /// Every version that carries a stage, with its stages.
    async fn version_stages(
        &self,
        name: &SecretRef,
    ) -> Result<Vec<(String, Vec<Stage>)>, SecretError>;

    /// Stores `value` as version `version` staged AWSPENDING (idempotent for
    /// the same version and value).
    async fn put_pending(
        &self,
        name: &SecretRef,
        version: &str,
        value: SecretValue,
    ) -> Result<(), SecretError>;

    /// Makes `version` AWSCURRENT; the old current becomes AWSPREVIOUS
    /// (nothing happens if it is current already).
    async fn promote(&self, name: &SecretRef, version: &str) -> Result<(), SecretError>;

    /// The current value, or an error that says how to provide it.
    async fn current(&self, name: &SecretRef) -> Result<SecretValue, SecretError> {
        self.get(name, Stage::Current).await?.ok_or_else(|| SecretError::NotFound {
            name: name.as_str().to_owned(),
            hint: "store it first (for local runs: a file in the secrets folder or DIRSYNC_SECRET_<NAME>)".into(),
        })
    }
}

/// Secrets for local runs and tests: held in memory, seeded from a folder
/// (`<dir>/<name>`, where `/` in the name is a subfolder) and from
/// environment variables `DIRSYNC_SECRET_<NAME>` (name upper-cased, every
/// character other than letters and digits turned into `_`).
/// One secret's versions: stage → (version id, value).
type Versions = HashMap<Stage, (String, SecretValue)>;

/// What a secret's two files looked like (modified time and length of the
/// plain and the stages file) when this process last read or wrote them.
type Stamp = [Option<(std::time::SystemTime, u64)>; 2];

#[derive(Debug, Default)]
pub struct LocalSecretStore {
    dir: Option<PathBuf>,
    /// Per secret: stage → (version id, value).
    versions: Mutex<HashMap<String, Versions>>,
    /// Per secret held from (or written to) files: how they looked then.
    /// Another process (`dirsync cert rotate` beside `dirsync serve`)
    /// writes new versions; a changed stamp makes this one read them.
    stamps: Mutex<HashMap<String, Stamp>>,
}

impl LocalSecretStore {
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Reads secrets not yet held in memory from files under `dir`; `put`
    /// writes the current version back there.
    pub fn with_dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: Some(dir.into()),
            ..Self::default()
        }
    }

    /// Sets a version directly (tests, rotation steps).
    pub fn set(&self, name: &SecretRef, stage: Stage, value: SecretValue) {
        self.lock()
            .entry(name.as_str().to_owned())
            .or_default()
            .insert(stage, (uuid::Uuid::new_v4().to_string(), value));
        self.remember_files(name);
    }

    pub fn env_name(name: &SecretRef) -> String {
        let mapped: String = name
            .as_str()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        format!("DIRSYNC_SECRET_{mapped}")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Versions>> {
        self.versions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn file(&self, name: &SecretRef) -> Option<PathBuf> {
        // Names are restricted to /_+=.@-: by SecretRef; refuse climbing out.
        let rel = name.as_str().replace(':', "_");
        if rel.split('/').any(|part| part == ".." || part.is_empty()) {
            return None;
        }
        self.dir.as_ref().map(|d| d.join(rel))
    }
}

impl LocalSecretStore {
    /// The file keeping every stage of a secret between processes.
    fn stages_file(&self, name: &SecretRef) -> Option<PathBuf> {
        self.file(name).map(|f| {
            let mut s = f.into_os_string();
            s.push(".stages.json");
            PathBuf::from(s)
        })
    }

    /// The stamp of a secret's files now (`None` without a folder).
    fn stamp(&self, name: &SecretRef) -> Option<Stamp> {
        let look = |path: Option<PathBuf>| {
            let meta = std::fs::metadata(path?).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        };
        self.dir.as_ref()?;
        Some([look(self.file(name)), look(self.stages_file(name))])
    }

    fn remember_files(&self, name: &SecretRef) {
        if let Some(stamp) = self.stamp(name) {
            self.stamps
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.as_str().to_owned(), stamp);
        }
    }

    /// Whether memory holds the secret as its files are now.
    fn is_fresh(&self, name: &SecretRef) -> bool {
        let held = self.lock().contains_key(name.as_str());
        let Some(now) = self.stamp(name) else {
            return held;
        };
        let stamps = self.stamps.lock().unwrap_or_else(|p| p.into_inner());
        match stamps.get(name.as_str()) {
            Some(then) => *then == now,
            None => held,
        }
    }

    /// Brings a secret into memory from its files: the first time, and
    /// again whenever another process has changed them.
    fn load(&self, name: &SecretRef) -> Result<(), SecretError> {
        if self.is_fresh(name) {
            return Ok(());
        }
        let versions = self.read_files(name)?;
        let mut all = self.lock();
        if versions.is_empty() {
            all.remove(name.as_str());
        } else {
            all.insert(name.as_str().to_owned(), versions);
        }
        drop(all);
        self.remember_files(name);
        Ok(())
    }

    /// A secret's versions as its files hold them.
    fn read_files(&self, name: &SecretRef) -> Result<Versions, SecretError> {
        let mut versions = Versions::new();
        if let Some(path) = self.stages_file(name).filter(|p| p.is_file()) {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                SecretError::Backend(format!("cannot read {}: {e}", path.display()))
            })?;
            let stored: HashMap<String, (String, String)> =
                serde_json::from_str(&text).map_err(|e| {
                    SecretError::Backend(format!("{} is unreadable: {e}", path.display()))
                })?;
            for stage in [Stage::Current, Stage::Previous, Stage::Pending] {
                if let Some((id, value)) = stored.get(stage.label()) {
                    versions.insert(stage, (id.clone(), SecretValue::new(value.clone())));
                }
            }
        } else if let Some(path) = self.file(name).filter(|p| p.is_file()) {
            // A secret dropped in by hand: one current version.
            let text = std::fs::read_to_string(&path).map_err(|e| {
                SecretError::Backend(format!("cannot read {}: {e}", path.display()))
            })?;
            let value = SecretValue::new(text.trim_end_matches(['\r', '\n']));
            versions.insert(Stage::Current, (uuid::Uuid::new_v4().to_string(), value));
        }
        Ok(versions)
    }

    /// Writes a secret's versions back to its files: the current value in
    /// the plain file, every stage in the stages file, both owner-only.
    fn persist(&self, name: &SecretRef) -> Result<(), SecretError> {
        let (Some(plain), Some(stages)) = (self.file(name), self.stages_file(name)) else {
            return Ok(());
        };
        let versions = self.lock().get(name.as_str()).cloned().unwrap_or_default();
        if let Some(parent) = plain.parent() {
            std::fs::create_dir_all(parent).map_err(|e| SecretError::Backend(e.to_string()))?;
        }
        if let Some((_, current)) = versions.get(&Stage::Current) {
            write_private(&plain, current.expose())?;
        }
        let stored: HashMap<&str, (String, String)> = versions
            .iter()
            .map(|(stage, (id, v))| (stage.label(), (id.clone(), v.expose().to_owned())))
            .collect();
        write_private(&stages, &serde_json::to_string(&stored).unwrap_or_default())?;
        self.remember_files(name);
        Ok(())
    }
}

#[async_trait]
impl SecretStore for LocalSecretStore {
    async fn get(
        &self,
        name: &SecretRef,
        stage: Stage,
    ) -> Result<Option<SecretValue>, SecretError> {
        if stage == Stage::Current
            && let Ok(v) = std::env::var(Self::env_name(name))
        {
            return Ok(Some(SecretValue::new(v)));
        }
        self.load(name)?;
        Ok(self
            .lock()
            .get(name.as_str())
            .and_then(|m| m.get(&stage))
            .map(|(_, v)| v.clone()))
    }

    async fn put(&self, name: &SecretRef, value: SecretValue) -> Result<(), SecretError> {
        self.load(name)?;
        {
            let mut all = self.lock();
            let versions = all.entry(name.as_str().to_owned()).or_default();
            if let Some(old) = versions.remove(&Stage::Current) {
                versions.insert(Stage::Previous, old);
            }
            versions.insert(Stage::Current, (uuid::Uuid::new_v4().to_string(), value));
        }
        self.persist(name)
    }

    async fn get_version(
        &self,
        name: &SecretRef,
        version: &str,
    ) -> Result<Option<SecretValue>, SecretError> {
        self.load(name)?;
        Ok(self
            .lock()
            .get(name.as_str())
            .and_then(|m| m.values().find(|(id, _)| id == version))
            .map(|(_, v)| v.clone()))
    }

    async fn version_stages(
        &self,
        name: &SecretRef,
    ) -> Result<Vec<(String, Vec<Stage>)>, SecretError> {
        self.load(name)?;
        let all = self.lock();
        let mut out: Vec<(String, Vec<Stage>)> = Vec::new();
        for (stage, (id, _)) in all.get(name.as_str()).into_iter().flatten() {
            match out.iter_mut().find(|(v, _)| v == id) {
                Some((_, stages)) => stages.push(*stage),
                None => out.push((id.clone(), vec![*stage])),
            }
        }
        Ok(out)
    }

    async fn put_pending(
        &self,
        name: &SecretRef,
        version: &str,
        value: SecretValue,
    ) -> Result<(), SecretError> {
        self.load(name)?;
        {
            let mut all = self.lock();
            let versions = all.entry(name.as_str().to_owned()).or_default();
            if let Some((id, v)) = versions.get(&Stage::Pending)
                && id == version
                && *v != value
            {
                return Err(SecretError::Backend(format!(
                    "version {version} of {name:?} already exists with another value"
                )));
            }
            versions.insert(Stage::Pending, (version.to_owned(), value));
        }
        self.persist(name)
    }

    async fn promote(&self, name: &SecretRef, version: &str) -> Result<(), SecretError> {
        self.load(name)?;
        {
            let mut all = self.lock();
            let versions = all.entry(name.as_str().to_owned()).or_default();
            if versions
                .get(&Stage::Current)
                .is_some_and(|(id, _)| id == version)
            {
                return Ok(());
            }
            let pending = match versions.get(&Stage::Pending) {
                Some((id, v)) if id == version => v.clone(),
                _ => {
                    return Err(SecretError::NotFound {
                        name: name.as_str().to_owned(),
                        hint: format!("version {version} is not pending"),
                    });
                }
            };
            versions.remove(&Stage::Pending);
            if let Some(old) = versions.remove(&Stage::Current) {
                versions.insert(Stage::Previous, old);
            }
            versions.insert(Stage::Current, (version.to_owned(), pending));
        }
        self.persist(name)
    }

    /// Held versions read from files are read again; what was only ever
    /// set in memory stays.
    fn forget(&self, name: &SecretRef) {
        let from_files = self
            .stamps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name.as_str())
            .is_some_and(|stamp| stamp.iter().any(Option::is_some))
            .then(|| self.read_files(name));
        if let Some(Ok(versions)) = from_files {
            self.lock().insert(name.as_str().to_owned(), versions);
            self.remember_files(name);
        }
    }

    async fn delete(&self, name: &SecretRef) -> Result<(), SecretError> {
        self.lock().remove(name.as_str());
        self.stamps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name.as_str());
        for path in [self.file(name), self.stages_file(name)]
            .into_iter()
            .flatten()
        {
            if path.is_file() {
                std::fs::remove_file(&path).map_err(|e| SecretError::Backend(e.to_string()))?;
            }
        }
        Ok(())
    }
}

/// Writes a file readable by its owner only, whole or not at all: the
/// text goes to a temporary file beside it that is then renamed over it,
/// so another process reading the secret never sees half a version.
fn write_private(path: &std::path::Path, text: &str) -> Result<(), SecretError> {
    use std::io::Write;
    let failed =
        |e: std::io::Error| SecretError::Backend(format!("cannot write {}: {e}", path.display()));
    let mut temp = path.as_os_str().to_owned();
    temp.push(format!(".{}.tmp", uuid::Uuid::new_v4().simple()));
    let temp = PathBuf::from(temp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options
        .open(&temp)
        .and_then(|mut file| {
            file.write_all(text.as_bytes())
                .and_then(|()| file.sync_all())
        })
        .and_then(|()| std::fs::rename(&temp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written.map_err(failed)
}

/// A secret store that answers one secret's current value with a
/// candidate, and reads everything else from the store beneath: a new
/// secret is tested with it before it replaces the working one. It never
/// writes.
pub struct Candidate {
    pub inner: std::sync::Arc<dyn SecretStore>,
    pub name: SecretRef,
    pub value: SecretValue,
}

impl Candidate {
    fn refuse(&self) -> SecretError {
        SecretError::Backend("a candidate secret is only read while it is tested".into())
    }
}

#[async_trait]
impl SecretStore for Candidate {
    async fn get(
        &self,
        name: &SecretRef,
        stage: Stage,
    ) -> Result<Option<SecretValue>, SecretError> {
        if *name == self.name && stage == Stage::Current {
            return Ok(Some(self.value.clone()));
        }
        self.inner.get(name, stage).await
    }

    async fn put(&self, _: &SecretRef, _: SecretValue) -> Result<(), SecretError> {
        Err(self.refuse())
    }

    async fn delete(&self, _: &SecretRef) -> Result<(), SecretError> {
        Err(self.refuse())
    }

    fn forget(&self, name: &SecretRef) {
        self.inner.forget(name);
    }

    async fn get_version(
        &self,
        name: &SecretRef,
        version: &str,
    ) -> Result<Option<SecretValue>, SecretError> {
        self.inner.get_version(name, version).await
    }

    async fn version_stages(
        &self,
        name: &SecretRef,
    ) -> Result<Vec<(String, Vec<Stage>)>, SecretError> {
        self.inner.version_stages(name).await
    }

    async fn put_pending(&self, _: &SecretRef, _: &str, _: SecretValue) -> Result<(), SecretError> {
        Err(self.refuse())
    }

    async fn promote(&self, _: &SecretRef, _: &str) -> Result<(), SecretError> {
        Err(self.refuse())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> SecretRef {
        s.parse().unwrap()
    }

    #[test]
    fn values_never_print() {
        let v = SecretValue::new("hunter2");
        assert_eq!(format!("{v:?} {v}"), "<redacted> <redacted>");
        let err = SecretError::NotFound {
            name: "x".into(),
            hint: "h".into(),
        };
        assert!(!err.to_string().contains("hunter2"));
    }

    #[tokio::test]
    async fn put_keeps_the_previous_version_and_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalSecretStore::with_dir(dir.path());
        let n = name("dirsync/acme/ad-password");
        assert!(store.get(&n, Stage::Current).await.unwrap().is_none());
        assert!(matches!(
            store.current(&n).await,
            Err(SecretError::NotFound { .. })
        ));
        store.put(&n, SecretValue::new("one")).await.unwrap();
        store.put(&n, SecretValue::new("two")).await.unwrap();
        assert_eq!(store.current(&n).await.unwrap().expose(), "two");
        assert_eq!(
            store
                .get(&n, Stage::Previous)
                .await
                .unwrap()
                .unwrap()
                .expose(),
            "one"
        );
        let path = dir.path().join("dirsync/acme/ad-password");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        // A fresh store reads it back from the folder.
        let again = LocalSecretStore::with_dir(dir.path());
        assert_eq!(again.current(&n).await.unwrap().expose(), "two");
        again.delete(&n).await.unwrap();
        assert!(!path.exists());
    }

    /// Two stores on one folder stand for two processes (`dirsync serve`
    /// and `dirsync cert rotate`): what one writes, the other reads next.
    #[tokio::test]
    async fn versions_written_by_another_process_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let (serving, rotating) = (
            LocalSecretStore::with_dir(dir.path()),
            LocalSecretStore::with_dir(dir.path()),
        );
        let n = name("dirsync/app-cert");
        rotating.put(&n, SecretValue::new("first")).await.unwrap();
        assert_eq!(serving.current(&n).await.unwrap().expose(), "first");

        rotating
            .put_pending(&n, "v2", SecretValue::new("second"))
            .await
            .unwrap();
        rotating.promote(&n, "v2").await.unwrap();
        assert_eq!(serving.current(&n).await.unwrap().expose(), "second");
        let previous = serving.get(&n, Stage::Previous).await.unwrap().unwrap();
        assert_eq!(previous.expose(), "first");
        let stages = serving.version_stages(&n).await.unwrap();
        assert!(
            stages.contains(&("v2".into(), vec![Stage::Current])),
            "{stages:?}"
        );

        // A write this store makes is not mistaken for another's.
        serving.put(&n, SecretValue::new("third")).await.unwrap();
        assert_eq!(rotating.current(&n).await.unwrap().expose(), "third");
        assert_eq!(serving.current(&n).await.unwrap().expose(), "third");

        rotating.delete(&n).await.unwrap();
        assert!(serving.get(&n, Stage::Current).await.unwrap().is_none());
    }

    /// A file rewritten so that its time and length look unchanged (a
    /// coarse clock) is read again once a value is refused as stale.
    #[tokio::test]
    async fn forget_rereads_what_the_files_hold() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalSecretStore::with_dir(dir.path());
        let n = name("dirsync/app-cert");
        store.put(&n, SecretValue::new("aaaa")).await.unwrap();
        let stages = store.stages_file(&n).unwrap();
        let when = std::fs::metadata(&stages).unwrap().modified().unwrap();
        let text = std::fs::read_to_string(&stages)
            .unwrap()
            .replace("aaaa", "bbbb");
        std::fs::write(&stages, text).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&stages)
            .unwrap()
            .set_modified(when)
            .unwrap();
        assert_eq!(
            store.current(&n).await.unwrap().expose(),
            "aaaa",
            "looks unchanged"
        );
        store.forget(&n);
        assert_eq!(store.current(&n).await.unwrap().expose(), "bbbb");

        // What was only set in memory is kept.
        let kept = name("dirsync/in-memory");
        store.set(&kept, Stage::Current, SecretValue::new("held"));
        store.forget(&kept);
        assert_eq!(store.current(&kept).await.unwrap().expose(), "held");
    }

    #[test]
    fn env_names_are_predictable() {
        assert_eq!(
            LocalSecretStore::env_name(&name("dirsync/acme-1.pw")),
            "DIRSYNC_SECRET_DIRSYNC_ACME_1_PW"
        );
    }
}
