//! Domain types. Everything here is plain data that validates itself on
//! construction; nothing does I/O.

mod account;
mod address;
mod audit;
mod connector;
mod directory;
mod error;
mod guard;
mod ids;
pub mod ldap_dn;
mod ldap_filter;
mod region;
mod run;
mod secret_binding;

pub use account::Account;
pub use address::{DomainFilter, DomainName, EmailAddress};
pub use audit::{AUDIT_RETENTION_DAYS, AuditAction, AuditOutcome, AuditRecord};
pub use connector::{
    Cloud, Connector, ConnectorKind, ConnectorSpec, ConnectorState, Consent, DominoIdentity,
    LdapSettings, LdapTransport, SecretRef, SourceConfig, SyncOptions, graph_scope, tenant_name,
};
pub use directory::{
    ContentHash, Group, GroupKind, GroupScope, MemberKind, MemberRole, Membership, User,
};
pub use error::ValidationError;
pub use guard::{DeletionGuard, GUARD_SETTINGS, Limit, PERCENT_FLOOR};
pub use ids::{AccountId, ConnectorId, RunId, SourceId};
pub use region::Region;
pub use run::{
    ActionCounts, Cursor, Lease, ObjectWarning, Review, RunStatus, SyncMode, SyncRun, Trigger,
    WarningKind,
};
pub use secret_binding::CHANGEABLE;
