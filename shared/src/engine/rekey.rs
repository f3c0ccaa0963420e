//! A connector whose source now gives its objects other ids (a Domino
//! connector keyed by DN, now by `dominoUNID`) is re-keyed once, before
//! its next run starts: the stored objects take their new ids in place,
//! so the run that follows finds them rather than removing and creating
//! them.

use crate::domain::{Connector, ObjectWarning, RunId, WarningKind};
use crate::source::DirectorySource;
use crate::store::{Scope, StoreError};

use super::{EngineError, SyncEngine};

impl SyncEngine {
    /// Re-keys the connector's objects if its source asks for it (see
    /// [`DirectorySource::identity_changes`]), then records the connector
    /// as migrated; returns the note for the run. Never while a run is in
    /// progress, whose checkpoints name the old ids: that run ends first.
    /// A source that cannot be read leaves everything as it was, and the
    /// run then says why.
    pub(super) async fn rekey(
        &self,
        connector: &Connector,
        source: &dyn DirectorySource,
        scope: &Scope,
    ) -> Result<Option<ObjectWarning>, EngineError> {
        if !connector.source.keyed_by_legacy_ids() {
            return Ok(None);
        }
        // The caller's copy may be older than this lease: another
        // invocation may have re-keyed since. Then the store holds the new
        // ids, and the source must give them too.
        let stored = self
            .store
            .get_connector(&connector.account, &connector.id)
            .await?;
        if stored.is_some_and(|c| !c.source.keyed_by_legacy_ids()) {
            source.use_new_ids();
            return Ok(None);
        }
        let cp = self.checkpoints(scope, &RunId::generate(self.store.now()));
        if cp.load_run().await?.is_some() {
            return Ok(None);
        }
        let ids = match source.identity_changes().await {
            Ok(Some(ids)) => ids,
            Ok(None) => return Ok(None),
            Err(e) => {
                tracing::warn!(connector = %scope.connector, error = %e, "the ids could not be read for re-keying");
                return Ok(None);
            }
        };
        // First: a staged list names the old ids, and approving it once
        // some objects have moved (this re-keying may stop half-way) would
        // act on objects no longer there under them.
        let why = "Superseded: the connector's objects are re-keyed (from DN to dominoUNID) after this run \
                   staged its actions; the next run stages them anew if they are still due.";
        self.supersede_staged(scope, None, why).await?;
        let done = self.store.rekey(scope, &ids).await?;
        self.mark_migrated(connector).await?;
        tracing::info!(connector = %scope.connector, ?done, "re-keyed the connector's objects");
        Ok(Some(ObjectWarning {
            kind: WarningKind::IdsMigrated,
            object: connector.id.to_string(),
            detail: format!(
                "before this run, {} users and {} groups (with {} memberships) kept by DN took their \
                 dominoUNID as id; renames and moves keep them from now on. Nothing was removed or created.",
                done.users, done.groups, done.memberships
            ),
        }))
    }

    /// The stored connector, at whatever version it is now, marked as
    /// keyed by its source's ids.
    async fn mark_migrated(&self, connector: &Connector) -> Result<(), StoreError> {
        loop {
            let Some(mut current) = self
                .store
                .get_connector(&connector.account, &connector.id)
                .await?
            else {
                return Ok(());
            };
            if !current.source.keyed_by_legacy_ids() {
                return Ok(());
            }
            current.source.ids_migrated();
            match self.store.update_connector(&current).await {
                Err(StoreError::VersionConflict { .. }) => continue,
                other => return other.map(drop),
            }
        }
    }
}
