//! Deterministic directory generation: the same seed and domains give the same
//! directory, fast enough for a 100,000-user tenant in a benchmark.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use crate::directory::{Directory, GroupEntry};
use crate::model::{MemberKind, SimContact, SimGroup, SimUser, UserType};

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct GenSpec {
    pub seed: u64,
    pub users: u32,
    pub groups: u32,
    /// Mail domains, primary first; empty: the tenant's verified domains.
    pub domains: Vec<String>,
    /// Guests (`#EXT#` UPNs, `userType` Guest).
    pub guest_ratio: f64,
    /// `accountEnabled: false`.
    pub disabled_ratio: f64,
    /// Users with no `mail` and no `proxyAddresses`.
    pub no_mail_ratio: f64,
    /// Users with one or two `smtp:` aliases (some in the second domain).
    pub alias_ratio: f64,
    /// Average direct user members per group.
    pub avg_group_size: u32,
    /// Nest some groups in others (without cycles).
    pub nested_groups: bool,
    /// Add one "All Users" group with this many members.
    pub large_group_members: Option<u32>,
    /// Organizational contacts, each a member of one mail-enabled group.
    pub contacts: u32,
}

impl GenSpec {
    /// Realistic defaults for a tenant of this size: about five memberships
    /// per user, 2% guests, 3% disabled, 1% without mail, 30% with aliases,
    /// some nested groups, a few contacts.
    pub fn sized(users: u32, groups: u32, seed: u64) -> Self {
        let avg_group_size = if groups == 0 {
            0
        } else {
            (u64::from(users) * 5 / u64::from(groups)).max(1) as u32
        };
        GenSpec {
            seed,
            users,
            groups,
            domains: Vec::new(),
            guest_ratio: 0.02,
            disabled_ratio: 0.03,
            no_mail_ratio: 0.01,
            alias_ratio: 0.30,
            avg_group_size,
            nested_groups: true,
            large_group_members: None,
            contacts: users / 100,
        }
    }
}

impl Default for GenSpec {
    fn default() -> Self {
        GenSpec::sized(100, 10, 1)
    }
}

const FIRST: [&str; 40] = [
    "Adele",
    "Alex",
    "Allan",
    "Ana",
    "Ben",
    "Carla",
    "Chen",
    "Dana",
    "Diego",
    "Elena",
    "Emma",
    "Farah",
    "Grady",
    "Hana",
    "Henrietta",
    "Isaiah",
    "Ivan",
    "Jo",
    "Johanna",
    "Kenji",
    "Lee",
    "Lidia",
    "Lynne",
    "Megan",
    "Miriam",
    "Nestor",
    "Nia",
    "Omar",
    "Patti",
    "Pradeep",
    "Quinn",
    "Rosa",
    "Sami",
    "Sofia",
    "Tomas",
    "Uma",
    "Vikram",
    "Wanda",
    "Yara",
    "Zoe",
];

const LAST: [&str; 40] = [
    "Vance",
    "Wilber",
    "Deyoung",
    "Silva",
    "Okafor",
    "Rossi",
    "Wei",
    "Kowalski",
    "Alvarez",
    "Petrova",
    "Larsen",
    "Haddad",
    "Archie",
    "Sato",
    "Bennett",
    "Mensah",
    "Novak",
    "Diaz",
    "Lindqvist",
    "Tanaka",
    "Gu",
    "Holloway",
    "Robbins",
    "Bowen",
    "Caldwell",
    "Celeste",
    "Ahmed",
    "Farouk",
    "Fernandez",
    "Gupta",
    "Murphy",
    "Santos",
    "Kariuki",
    "Moreau",
    "Berg",
    "Iyer",
    "Rao",
    "Nowak",
    "Costa",
    "Schmidt",
];

const DEPARTMENTS: [&str; 10] = [
    "Sales",
    "Marketing",
    "Engineering",
    "Finance",
    "Legal",
    "Operations",
    "Support",
    "HR",
    "Research",
    "Executive",
];

const TITLES: [&str; 10] = [
    "Analyst",
    "Engineer",
    "Manager",
    "Director",
    "Consultant",
    "Specialist",
    "Coordinator",
    "Administrator",
    "Designer",
    "Associate",
];

const GUEST_DOMAINS: [&str; 5] = [
    "fabrikam.example",
    "tailspin.example",
    "northwind.example",
    "adatum.example",
    "woodgrove.example",
];

const GROUP_WORDS: [&str; 12] = [
    "Project",
    "Team",
    "Site",
    "Region",
    "Product",
    "Office",
    "Program",
    "Committee",
    "Lab",
    "Channel",
    "Partners",
    "Council",
];

fn new_id(rng: &mut StdRng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.random()).into_uuid()
}

fn pick<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

/// Fills `dir` per `spec`. `domains` are the mail domains (primary first) and
/// `initial_domain` the tenant's `*.onmicrosoft.com`, used in guest UPNs.
pub(crate) fn populate(
    dir: &mut Directory,
    spec: &GenSpec,
    domains: &[String],
    initial_domain: &str,
) {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let primary = domains
        .first()
        .map(String::as_str)
        .unwrap_or(initial_domain);
    let secondary = domains.get(1).map(String::as_str);

    let mut user_ids = Vec::with_capacity(spec.users as usize);
    for i in 0..spec.users {
        let user = generate_user(&mut rng, spec, i, primary, secondary, initial_domain);
        user_ids.push(user.id);
        dir.users.insert(user.id, user);
    }

    let mut group_ids = Vec::with_capacity(spec.groups as usize);
    let mut mail_groups = Vec::new();
    for j in 0..spec.groups {
        let group = generate_group(&mut rng, j, primary);
        let mut members = BTreeMap::new();
        if !user_ids.is_empty() && spec.avg_group_size > 0 {
            // Sizes vary from half to one and a half times the average.
            let half = spec.avg_group_size / 2;
            let size = half + rng.random_range(0..=spec.avg_group_size);
            for _ in 0..size.min(spec.users) {
                let user = user_ids[rng.random_range(0..user_ids.len())];
                members.insert(user, MemberKind::User);
            }
        }
        if group.mail_enabled {
            mail_groups.push(group.id);
        }
        group_ids.push(group.id);
        dir.groups.insert(group.id, GroupEntry { group, members });
    }

    if spec.nested_groups {
        // Only nest a group in one created before it: no cycles.
        for (j, &child) in group_ids.iter().enumerate().skip(1) {
            if rng.random::<f64>() < 0.05 {
                let parent = group_ids[rng.random_range(0..j)];
                if let Some(entry) = dir.groups.get_mut(&parent) {
                    entry.members.insert(child, MemberKind::Group);
                }
            }
        }
    }

    for k in 0..spec.contacts {
        let id = new_id(&mut rng);
        let first = pick(&mut rng, &FIRST);
        let last = pick(&mut rng, &LAST);
        let domain = pick(&mut rng, &GUEST_DOMAINS);
        let mail = format!(
            "{}.{}.c{k}@{domain}",
            first.to_lowercase(),
            last.to_lowercase()
        );
        let mut contact = SimContact::new(id, &format!("{first} {last} (external)"), &mail);
        contact.given_name = Some(first.to_string());
        contact.surname = Some(last.to_string());
        contact.company_name = Some(domain.split('.').next().unwrap_or(domain).to_string());
        let home = if mail_groups.is_empty() {
            &group_ids
        } else {
            &mail_groups
        };
        if !home.is_empty() {
            let group = home[rng.random_range(0..home.len())];
            if let Some(entry) = dir.groups.get_mut(&group) {
                entry.members.insert(id, MemberKind::Contact);
            }
        }
        dir.contacts.insert(id, contact);
    }

    if let Some(count) = spec.large_group_members {
        let id = new_id(&mut rng);
        let mut group = SimGroup::security(id, "All Users");
        group.description = Some("Every user of the organization".to_string());
        let members = user_ids
            .iter()
            .take(count as usize)
            .map(|&u| (u, MemberKind::User))
            .collect();
        dir.groups.insert(id, GroupEntry { group, members });
    }

    // Generation replaces the population wholesale: tokens issued before it
    // would describe another directory, so they expire.
    dir.expire_tokens();
}

fn generate_user(
    rng: &mut StdRng,
    spec: &GenSpec,
    i: u32,
    primary: &str,
    secondary: Option<&str>,
    initial_domain: &str,
) -> SimUser {
    let id = new_id(rng);
    let first = pick(rng, &FIRST);
    let last = pick(rng, &LAST);
    // The index keeps local parts unique however the names fall.
    let local = format!("{}.{}{i}", first.to_lowercase(), last.to_lowercase());
    let display = format!("{first} {last}");
    let guest = rng.random::<f64>() < spec.guest_ratio;
    let disabled = rng.random::<f64>() < spec.disabled_ratio;
    let no_mail = rng.random::<f64>() < spec.no_mail_ratio;
    let aliased = rng.random::<f64>() < spec.alias_ratio;
    let mut user = if guest {
        let home = pick(rng, &GUEST_DOMAINS);
        let mail = format!("{local}@{home}");
        let upn = format!("{local}_{home}#EXT#@{initial_domain}");
        let mut user = SimUser::new(id, &upn, &display);
        user.mail = Some(mail.clone());
        user.mail_nickname = Some(format!("{local}_{home}#EXT#"));
        user.proxy_addresses = vec![format!("SMTP:{mail}")];
        user.user_type = UserType::Guest;
        user
    } else {
        let upn = format!("{local}@{primary}");
        let mut user = SimUser::new(id, &upn, &display);
        user.department = Some(pick(rng, &DEPARTMENTS).to_string());
        user.job_title = Some(pick(rng, &TITLES).to_string());
        if rng.random::<f64>() < 0.4 {
            user.on_premises_sync_enabled = Some(true);
        }
        if no_mail {
            user.mail = None;
            user.proxy_addresses.clear();
        } else if aliased {
            user.proxy_addresses
                .push(format!("smtp:{}{i}@{primary}", first.to_lowercase()));
            if rng.random::<bool>() {
                let alias_domain = secondary.unwrap_or(primary);
                user.proxy_addresses.push(format!(
                    "smtp:{}.{}{i}@{alias_domain}",
                    last.to_lowercase(),
                    first.to_lowercase()
                ));
            }
        }
        user
    };
    user.given_name = Some(first.to_string());
    user.surname = Some(last.to_string());
    user.account_enabled = !disabled;
    user
}

fn generate_group(rng: &mut StdRng, j: u32, primary: &str) -> SimGroup {
    let id = new_id(rng);
    let name = format!(
        "{} {} {j}",
        pick(rng, &GROUP_WORDS),
        pick(rng, &DEPARTMENTS)
    );
    let nickname: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_lowercase();
    let mail = format!("{nickname}@{primary}");
    let roll = rng.random::<f64>();
    if roll < 0.6 {
        SimGroup::security(id, &name)
    } else if roll < 0.9 {
        SimGroup::unified(id, &name, &mail)
    } else {
        SimGroup::distribution(id, &name, &mail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generate(spec: &GenSpec) -> Directory {
        let mut dir = Directory::default();
        populate(
            &mut dir,
            spec,
            &["contoso.example".into(), "contoso.test".into()],
            "contoso.onmicrosoft.com",
        );
        dir
    }

    #[test]
    fn same_seed_same_directory_other_seed_other_directory() {
        let spec = GenSpec::sized(300, 20, 42);
        assert_eq!(generate(&spec).snapshot(), generate(&spec).snapshot());
        let other = GenSpec {
            seed: 43,
            ..spec.clone()
        };
        assert_ne!(generate(&other).snapshot(), generate(&spec).snapshot());
    }

    #[test]
    fn ratios_land_near_their_targets() {
        let spec = GenSpec::sized(10_000, 200, 7);
        let snap = generate(&spec).snapshot();
        let count = |f: &dyn Fn(&SimUser) -> bool| snap.users.iter().filter(|u| f(u)).count();
        let guests = count(&|u| u.user_type == UserType::Guest);
        let disabled = count(&|u| !u.account_enabled);
        let mailless = count(&|u| u.mail.is_none() && u.proxy_addresses.is_empty());
        let aliased = count(&|u| u.proxy_addresses.iter().any(|p| p.starts_with("smtp:")));
        assert!((120..=280).contains(&guests), "~2% guests, got {guests}");
        assert!(
            (200..=400).contains(&disabled),
            "~3% disabled, got {disabled}"
        );
        assert!(
            (40..=170).contains(&mailless),
            "~1% without mail, got {mailless}"
        );
        assert!(
            (2_500..=3_300).contains(&aliased),
            "~30% aliased, got {aliased}"
        );
        assert!(
            snap.users
                .iter()
                .filter(|u| u.user_type == UserType::Guest)
                .all(|u| u
                    .user_principal_name
                    .contains("#EXT#@contoso.onmicrosoft.com"))
        );
        let user_memberships = snap
            .memberships
            .iter()
            .filter(|m| m.member_kind == MemberKind::User)
            .count();
        assert!(
            (40_000..=55_000).contains(&user_memberships),
            "about five memberships per user, got {user_memberships}"
        );
    }
}
