//! A connector's directory rows (users, groups, memberships, and on
//! DynamoDB their address claims too), as text by key: what a store diff
//! compares. Runs, checkpoints and audit records are left out: a failed
//! run records itself, and "0 rows changed" is about the directory.

use std::collections::{BTreeMap, BTreeSet};

use dirsync_shared::domain::{Connector, Group, User};
use dirsync_shared::store::{Scope, all_pages};

use super::{Fixture, table_items};

/// What the store holds for a connector, read through the store's API.
pub struct Stored {
    pub users: Vec<User>,
    pub groups: Vec<Group>,
    /// (group, member) ids.
    pub members: BTreeSet<(String, String)>,
}

pub async fn stored(f: &Fixture, c: &Connector) -> Stored {
    let s = Scope::new(c.account.clone(), c.id.clone());
    let users = all_pages(|p| f.store.list_users(&s, p)).await.unwrap();
    let groups = all_pages(|p| f.store.list_groups(&s, p)).await.unwrap();
    let mut members = BTreeSet::new();
    for g in &groups {
        let ms = all_pages(|p| f.store.group_members(&s, &g.id, p))
            .await
            .unwrap();
        members.extend(
            ms.into_iter()
                .map(|m| (m.group.to_string(), m.member.to_string())),
        );
    }
    Stored {
        users,
        groups,
        members,
    }
}

pub async fn directory_rows(f: &Fixture, c: &Connector) -> BTreeMap<String, String> {
    if f.table.is_some() {
        return dynamo_rows(f, c).await;
    }
    let s = Scope::new(c.account.clone(), c.id.clone());
    let mut rows = BTreeMap::new();
    for u in all_pages(|p| f.store.list_users(&s, p)).await.unwrap() {
        rows.insert(format!("user {}", u.id), serde_json::to_string(&u).unwrap());
    }
    for g in all_pages(|p| f.store.list_groups(&s, p)).await.unwrap() {
        for m in all_pages(|p| f.store.group_members(&s, &g.id, p))
            .await
            .unwrap()
        {
            rows.insert(
                format!("member {} {}", m.group, m.member),
                serde_json::to_string(&m).unwrap(),
            );
        }
        rows.insert(
            format!("group {}", g.id),
            serde_json::to_string(&g).unwrap(),
        );
    }
    rows
}

async fn dynamo_rows(f: &Fixture, c: &Connector) -> BTreeMap<String, String> {
    let connector = format!("A#{}#C#{}#", c.account, c.id);
    let addresses = format!("A#{}#@#", c.account);
    let mut items = table_items(f).await;
    items.retain(|key, _| {
        let pk = key.split(' ').next().unwrap_or_default();
        let family = pk.strip_prefix(&connector).unwrap_or_default();
        let directory =
            family.starts_with("U#") || family == "G" || family.starts_with("M#") || family == "NK";
        directory || pk.starts_with(&addresses)
    });
    items
}
