//! Whether a connector's stored directory mirrors an Entra tenant: the
//! view the simulator's tenant should produce, the view the store holds
//! (read through the store's API), and their comparison.

use std::collections::{BTreeMap, BTreeSet};

use dirsync_entra_sim::{EntraSim, UserType};
use dirsync_shared::domain::Connector;
use uuid::Uuid;

use super::Fixture;

/// The platform view the tenant should produce, worked out from the
/// simulator's ground truth independently of the adapter's mapping.
#[derive(Debug, PartialEq)]
pub struct View {
    pub users: BTreeMap<String, (String, BTreeSet<String>, bool)>,
    pub groups: BTreeSet<String>,
    pub members: BTreeSet<(String, String)>,
}

pub fn expected(sim: &EntraSim, tenant: Uuid) -> View {
    let snap = sim.snapshot(tenant);
    let mut users = BTreeMap::new();
    for u in &snap.users {
        if u.user_type == UserType::Guest {
            continue;
        }
        let smtp = u
            .proxy_addresses
            .iter()
            .find_map(|p| p.strip_prefix("SMTP:"))
            .map(str::to_lowercase);
        let Some(primary) = u.mail.clone().map(|m| m.to_lowercase()).or(smtp.clone()) else {
            continue;
        };
        let mut aliases: BTreeSet<String> = u
            .proxy_addresses
            .iter()
            .filter_map(|p| p.strip_prefix("smtp:"))
            .map(str::to_lowercase)
            .chain(smtp)
            .collect();
        aliases.remove(&primary);
        users.insert(u.id.to_string(), (primary, aliases, u.account_enabled));
    }
    let members = snap
        .memberships
        .iter()
        .filter(|m| match m.member_kind {
            dirsync_entra_sim::MemberKind::User => users.contains_key(&m.member_id.to_string()),
            dirsync_entra_sim::MemberKind::Group => true,
            // The store keeps no contact objects, so no member points at one.
            dirsync_entra_sim::MemberKind::Contact => false,
        })
        .map(|m| (m.group_id.to_string(), m.member_id.to_string()))
        .collect();
    View {
        users,
        groups: snap.groups.iter().map(|g| g.id.to_string()).collect(),
        members,
    }
}

pub async fn view(f: &Fixture, c: &Connector) -> View {
    let super::rows::Stored {
        users,
        groups,
        members,
    } = super::rows::stored(f, c).await;
    View {
        users: users
            .into_iter()
            .map(|u| {
                let aliases = u.aliases.iter().map(|a| a.to_string()).collect();
                (
                    u.id.to_string(),
                    (u.primary_email.to_string(), aliases, u.enabled),
                )
            })
            .collect(),
        groups: groups.into_iter().map(|g| g.id.to_string()).collect(),
        members,
    }
}

pub fn assert_same(have: &View, want: &View) {
    assert_eq!(have.users.len(), want.users.len(), "user count");
    for (id, w) in &want.users {
        assert_eq!(have.users.get(id), Some(w), "user {id}");
    }
    assert_eq!(have.groups, want.groups, "groups");
    assert_eq!(have.members.len(), want.members.len(), "membership count");
    assert_eq!(have.members, want.members, "memberships");
}
