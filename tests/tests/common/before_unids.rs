//! A Domino source as dirsync read it before it knew `dominoUNID`: by DN,
//! with nothing to re-key. What builds the DN-keyed store a migration
//! starts from.

use async_trait::async_trait;
use dirsync_shared::source::ldap::LdapSource;
use dirsync_shared::source::{
    Change, ConnectionReport, DirectorySource, ReadFrom, SourceError, SourcePage, Stream,
};

pub struct BeforeUnids(pub LdapSource);

#[async_trait]
impl DirectorySource for BeforeUnids {
    async fn read(&self, stream: Stream, from: &ReadFrom) -> Result<SourcePage, SourceError> {
        let mut page = self.0.read(stream, from).await?;
        // Nor did it keep a person's DN as an attribute.
        for change in &mut page.changes {
            if let Change::User(u) = change {
                u.attributes.remove("distinguishedName");
            }
        }
        Ok(page)
    }

    async fn test_connection(&self) -> ConnectionReport {
        self.0.test_connection().await
    }
}
