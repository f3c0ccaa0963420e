//! Which user or group a path names. A reference is the object's id; else
//! one of its addresses (primary or alias, any case), if it is one and the
//! connector holds it; else its name, in any case (a user's display name or
//! user principal name, a group's name). Every route that takes a user or a
//! group resolves it here.

use std::future::Future;

use crate::domain::{AccountId, ConnectorId, EmailAddress, Group, SourceId, User};
use crate::store::{Page, PageRequest, Scope, StateStore, StoreError, each_page};

use super::super::{App, AppError};

/// A reference that names no object of the connector, or several.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error(
        "no {what} {reference:?} in connector {connector}: give its id, one of its addresses or its name"
    )]
    NotFound {
        what: &'static str,
        reference: String,
        connector: ConnectorId,
    },
    #[error(
        "{} {what}s of connector {connector} are named {reference:?} ({}): give the id of the one you mean",
        ids.len(),
        joined(ids)
    )]
    Ambiguous {
        what: &'static str,
        reference: String,
        connector: ConnectorId,
        ids: Vec<SourceId>,
    },
}

impl LookupError {
    fn not_found<T: Named>(reference: &str, scope: &Scope) -> Self {
        Self::NotFound {
            what: T::WHAT,
            reference: reference.to_owned(),
            connector: scope.connector.clone(),
        }
    }

    fn ambiguous<T: Named>(reference: &str, scope: &Scope, found: &[T]) -> Self {
        Self::Ambiguous {
            what: T::WHAT,
            reference: reference.to_owned(),
            connector: scope.connector.clone(),
            ids: found.iter().map(|o| o.id().clone()).collect(),
        }
    }
}

fn joined(ids: &[SourceId]) -> String {
    ids.iter()
        .map(SourceId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A user or a group, as a reference finds it.
pub(super) trait Named: Sized + Send {
    /// What a person calls it.
    const WHAT: &'static str;

    fn id(&self) -> &SourceId;

    /// Whether `name` is one of its names, in any case.
    fn is_named(&self, name: &str) -> bool;

    fn by_id(
        store: &StateStore,
        scope: &Scope,
        id: &SourceId,
    ) -> impl Future<Output = Result<Option<Self>, StoreError>> + Send;

    /// The object holding `address` in the account, with its connector.
    fn by_address(
        store: &StateStore,
        account: &AccountId,
        address: &EmailAddress,
    ) -> impl Future<Output = Result<Option<(ConnectorId, Self)>, StoreError>> + Send;

    /// One page of the connector's objects of this kind.
    fn page(
        store: &StateStore,
        scope: &Scope,
        page: PageRequest,
    ) -> impl Future<Output = Result<Page<Self>, StoreError>> + Send;
}

fn same_name(a: &str, b: &str) -> bool {
    a.to_lowercase() == b.to_lowercase()
}

impl Named for User {
    const WHAT: &'static str = "user";

    fn id(&self) -> &SourceId {
        &self.id
    }

    fn is_named(&self, name: &str) -> bool {
        [&self.display_name, &self.user_principal_name]
            .into_iter()
            .flatten()
            .any(|n| same_name(n, name))
    }

    async fn by_id(
        store: &StateStore,
        scope: &Scope,
        id: &SourceId,
    ) -> Result<Option<Self>, StoreError> {
        store.get_user(scope, id).await
    }

    async fn by_address(
        store: &StateStore,
        account: &AccountId,
        address: &EmailAddress,
    ) -> Result<Option<(ConnectorId, Self)>, StoreError> {
        store.find_user_by_address(account, address).await
    }

    async fn page(
        store: &StateStore,
        scope: &Scope,
        page: PageRequest,
    ) -> Result<Page<Self>, StoreError> {
        store.list_users(scope, page).await
    }
}

impl Named for Group {
    const WHAT: &'static str = "group";

    fn id(&self) -> &SourceId {
        &self.id
    }

    fn is_named(&self, name: &str) -> bool {
        same_name(&self.name, name)
    }

    async fn by_id(
        store: &StateStore,
        scope: &Scope,
        id: &SourceId,
    ) -> Result<Option<Self>, StoreError> {
        store.get_group(scope, id).await
    }

    async fn by_address(
        store: &StateStore,
        account: &AccountId,
        address: &EmailAddress,
    ) -> Result<Option<(ConnectorId, Self)>, StoreError> {
        store.find_group_by_address(account, address).await
    }

    async fn page(
        store: &StateStore,
        scope: &Scope,
        page: PageRequest,
    ) -> Result<Page<Self>, StoreError> {
        store.list_groups(scope, page).await
    }
}

/// The one object of the connector `reference` names: 404 when none
/// (or when the connector does not exist), 409 when several share the name.
pub(super) async fn resolve<T: Named>(
    app: &App,
    scope: &Scope,
    reference: &str,
) -> Result<T, AppError> {
    if let Some(found) = by_id(&app.store, scope, reference).await? {
        return Ok(found);
    }
    if let Some(found) = by_address(&app.store, scope, reference).await? {
        return Ok(found);
    }
    let mut named: Vec<T> = named(&app.store, scope, reference).await?;
    if named.len() > 1 {
        return Err(LookupError::ambiguous(reference, scope, &named).into());
    }
    match named.pop() {
        Some(found) => Ok(found),
        None => {
            // A connector that does not exist is said as such.
            super::connector(app, scope).await?;
            Err(LookupError::not_found::<T>(reference, scope).into())
        }
    }
}

async fn by_id<T: Named>(
    store: &StateStore,
    scope: &Scope,
    reference: &str,
) -> Result<Option<T>, StoreError> {
    match SourceId::new(reference) {
        Ok(id) => T::by_id(store, scope, &id).await,
        Err(_) => Ok(None),
    }
}

/// The object holding the address `reference` is, if it is one and this
/// connector's.
async fn by_address<T: Named>(
    store: &StateStore,
    scope: &Scope,
    reference: &str,
) -> Result<Option<T>, StoreError> {
    let Ok(address) = reference.parse::<EmailAddress>() else {
        return Ok(None);
    };
    Ok(T::by_address(store, &scope.account, &address)
        .await?
        .filter(|(connector, _)| *connector == scope.connector)
        .map(|(_, found)| found))
}

/// Every object of the connector called `name`, read page by page. A user
/// principal name looks like an address, so a reference with an `@` that
/// is no address of the connector's is tried as a name too.
async fn named<T: Named>(
    store: &StateStore,
    scope: &Scope,
    name: &str,
) -> Result<Vec<T>, StoreError> {
    let mut found = Vec::new();
    each_page(
        |p| T::page(store, scope, p),
        |page| found.extend(page.into_iter().filter(|o| o.is_named(name))),
    )
    .await?;
    Ok(found)
}
