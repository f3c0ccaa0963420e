//! Persistent state: the [`Table`] port, its DynamoDB and embedded adapters,
//! and the [`StateStore`] that every function and the engine use.

mod access;
mod addresses;
pub mod counting;
mod directory;
pub mod dynamo;
#[cfg(feature = "embedded")]
pub mod embedded;
pub mod keys;
mod nesting;
mod rekey;
mod state;
pub mod table;

pub use addresses::{AddressOwner, OwnerKind, SharedAddress};
pub use counting::CountingTable;
pub use directory::{
    GroupWrites, MembershipWrites, RemovedRows, StoredUsers, Upserted, UserWrites,
};
pub use dynamo::DynamoTable;
#[cfg(feature = "embedded")]
pub use embedded::EmbeddedTable;
pub use keys::Scope;
pub use nesting::Reached;
pub use rekey::Rekeyed;
pub use state::{
    Page, PageRequest, RUN_RETENTION_DAYS, StateStore, StoreError, all_pages, each_page,
};
pub use table::{Table, TableError};
