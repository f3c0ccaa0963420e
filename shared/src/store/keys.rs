//! The single-table key schema, in one place. `docs/state-schema.md` explains
//! it for people; this is what the code uses.
//!
//! Account and connector ids never contain `#` (they are validated slugs), so
//! every prefix below is unambiguous; source ids may contain anything and are
//! therefore always the last part of a key.

use sha2::{Digest, Sha256};

use crate::domain::{AccountId, ConnectorId, EmailAddress, Region, SourceId};

use super::table::Key;

/// Users of one connector are spread over this many partitions so that a
/// first sync of a large tenant is not capped by one partition's write rate
/// (1,000 writes per second in DynamoDB).
pub const USER_SHARDS: u32 = 16;

/// The account and connector a directory object belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub account: AccountId,
    pub connector: ConnectorId,
}

impl Scope {
    pub fn new(account: AccountId, connector: ConnectorId) -> Self {
        Self { account, connector }
    }

    fn base(&self) -> String {
        format!("A#{}#C#{}", self.account, self.connector)
    }
}

pub fn account_partition(account: &AccountId) -> String {
    format!("A#{account}")
}

pub fn account(account: &AccountId) -> Key {
    Key::new(account_partition(account), "ACCOUNT")
}

/// gsi1: every account, for operators listing them.
pub fn account_gsi(account: &AccountId) -> Key {
    Key::new("ACCOUNTS", format!("A#{account}"))
}

pub const CONNECTOR_PREFIX: &str = "C#";

pub fn connector(account: &AccountId, connector: &ConnectorId) -> Key {
    Key::new(
        format!("A#{account}"),
        format!("{CONNECTOR_PREFIX}{connector}"),
    )
}

/// gsi1: the connectors of a region, for the sync windows.
pub fn connector_gsi(region: Region, account: &AccountId, connector: &ConnectorId) -> Key {
    Key::new(
        region_partition(region),
        format!("A#{account}#C#{connector}"),
    )
}

pub fn region_partition(region: Region) -> String {
    format!("R#{}", region.code())
}

pub fn user_shard(id: &SourceId) -> u32 {
    let d = Sha256::digest(id.as_str().as_bytes());
    u32::from_be_bytes([d[0], d[1], d[2], d[3]]) % USER_SHARDS
}

pub fn user_partition(scope: &Scope, shard: u32) -> String {
    format!("{}#U#{shard:02}", scope.base())
}

pub fn user(scope: &Scope, id: &SourceId) -> Key {
    Key::new(user_partition(scope, user_shard(id)), id.as_str())
}

pub fn group_partition(scope: &Scope) -> String {
    format!("{}#G", scope.base())
}

pub fn group(scope: &Scope, id: &SourceId) -> Key {
    Key::new(group_partition(scope), id.as_str())
}

/// A group's members live in the group's own partition…
pub fn members_partition(scope: &Scope, group: &SourceId) -> String {
    format!("{}#M#{group}", scope.base())
}

pub fn membership(scope: &Scope, group: &SourceId, member: &SourceId) -> Key {
    Key::new(members_partition(scope, group), member.as_str())
}

/// …and gsi1 inverts them: the groups a member belongs to.
pub fn member_of_partition(scope: &Scope, member: &SourceId) -> String {
    format!("{}#MOF#{member}", scope.base())
}

pub fn membership_gsi(scope: &Scope, group: &SourceId, member: &SourceId) -> Key {
    Key::new(member_of_partition(scope, member), group.as_str())
}

/// One item per address and account: its key makes ownership unique.
pub fn address(account: &AccountId, address: &EmailAddress) -> Key {
    Key::new(format!("A#{account}#@#{address}"), "ADDR")
}

/// gsi1: the accounts that hold an address (routing mail to an account).
pub fn address_gsi(account: &AccountId, address: &EmailAddress) -> Key {
    Key::new(address_partition(address), format!("A#{account}"))
}

pub fn address_partition(address: &EmailAddress) -> String {
    format!("@#{address}")
}

/// Cursors and the lease share the connector's control partition.
pub fn control_partition(scope: &Scope) -> String {
    scope.base()
}

pub const CURSOR_PREFIX: &str = "CURSOR#";

pub fn cursor(scope: &Scope, stream: &str) -> Key {
    Key::new(control_partition(scope), format!("{CURSOR_PREFIX}{stream}"))
}

pub fn lease(scope: &Scope) -> Key {
    Key::new(control_partition(scope), "LEASE")
}

pub fn runs_partition(scope: &Scope) -> String {
    format!("{}#RUNS", scope.base())
}

pub fn run(scope: &Scope, run: &crate::domain::RunId) -> Key {
    Key::new(runs_partition(scope), run.as_str())
}

/// Short-lived items (consent states, once-only markers), by kind and key.
pub fn ephemeral(kind: &str, key: &str) -> Key {
    Key::new(format!("X#{kind}#{key}"), "X")
}

/// The engine's checkpoint of a run in progress (one item per stream).
pub const PROGRESS_PREFIX: &str = "PROGRESS#";

pub fn progress(scope: &Scope, name: &str) -> Key {
    Key::new(control_partition(scope), format!("{PROGRESS_PREFIX}{name}"))
}

/// Bulky per-run data (objects seen by a full read, the staged plan), in
/// numbered chunks under the run.
pub fn run_data_partition(scope: &Scope, run: &crate::domain::RunId) -> String {
    format!("{}#RUN#{run}", scope.base())
}

/// `part` names where the chunk came from (a stream's page), so writing the
/// same page again replaces its chunk instead of adding one.
pub fn run_chunk(scope: &Scope, run: &crate::domain::RunId, kind: &str, part: &str) -> Key {
    Key::new(run_data_partition(scope, run), format!("{kind}#{part}"))
}

/// Users the source has but the platform does not keep (guests, no
/// address, out of scope), so that their memberships are not written.
pub fn not_kept_partition(scope: &Scope) -> String {
    format!("{}#NK", scope.base())
}

/// Which account an Entra tenant is connected to: one tenant, one account.
pub fn tenant_claim(tenant: &uuid::Uuid) -> Key {
    Key::new(format!("T#{tenant}"), "TENANT")
}

/// Who may call the admin API for an account: one item per principal in
/// the account's partition…
pub const GRANT_PREFIX: &str = "GRANT#";

pub fn grant(account: &AccountId, principal: &str) -> Key {
    Key::new(
        account_partition(account),
        format!("{GRANT_PREFIX}{principal}"),
    )
}

/// …and gsi1 inverts them: the accounts a principal may act for.
pub fn grant_gsi(account: &AccountId, principal: &str) -> Key {
    Key::new(principal_partition(principal), format!("A#{account}"))
}

pub fn principal_partition(principal: &str) -> String {
    format!("P#{principal}")
}

/// An account's audit trail, newest last in key order (`time#id`).
pub fn audit_partition(account: &AccountId) -> String {
    format!("A#{account}#AUDIT")
}

pub fn audit(account: &AccountId, sort: &str) -> Key {
    Key::new(audit_partition(account), sort)
}

/// When an outsider's refused call was last recorded in the trail (one
/// record an hour per caller and action).
pub fn audit_limit(account: &AccountId, what: &str) -> Key {
    Key::new(format!("{}#LIMIT", audit_partition(account)), what)
}

/// Graph resource units spent by the platform app `app` in one second
/// (`slot`, epoch seconds): the app's total, and each tenant's share in a
/// partition of its own, so that a second's tenants do not all write to the
/// app counter's partition.
pub fn budget(app: &str, slot: i64, tenant: Option<&str>) -> Key {
    match tenant {
        Some(t) => Key::new(format!("B#{app}#{slot}#T#{}", t.to_ascii_lowercase()), "N"),
        None => Key::new(format!("B#{app}#{slot}"), "N"),
    }
}

/// Whether an item holds directory data: a user (`…#U#NN`), a group
/// (`…#G`), a membership (`…#M#group`) or an address claim
/// (`A#account#@#address`), as opposed to the runs' bookkeeping (run
/// records, checkpoints, progress, cursors, leases). What "0 directory items
/// written" (an unchanged re-sync) counts.
pub fn is_directory(key: &Key) -> bool {
    let pk = key.pk.as_str();
    pk.contains("#U#") || pk.ends_with("#G") || pk.contains("#M#") || pk.contains("#@#")
}

#[cfg(test)]
mod directory_tests {
    use super::*;
    use crate::domain::{RunId, SourceId};

    #[test]
    fn directory_keys_are_told_from_bookkeeping() {
        let scope = Scope::new(AccountId::new("a").unwrap(), ConnectorId::new("c").unwrap());
        let id = SourceId::new("x1").unwrap();
        let mail: EmailAddress = "x@contoso.com".parse().unwrap();
        let run = RunId::generate(chrono::Utc::now());
        for key in [
            user(&scope, &id),
            group(&scope, &id),
            membership(&scope, &id, &id),
            address(&scope.account, &mail),
        ] {
            assert!(is_directory(&key), "{key:?}");
        }
        for key in [
            account(&scope.account),
            connector(&scope.account, &scope.connector),
            cursor(&scope, "users"),
            lease(&scope),
            progress(&scope, "users"),
            super::run(&scope, &run),
            run_chunk(&scope, &run, "seen", "users#1"),
            Key::new(not_kept_partition(&scope), "x1"),
            budget("app", 1, Some("contoso")),
        ] {
            assert!(!is_directory(&key), "{key:?}");
        }
    }
}
