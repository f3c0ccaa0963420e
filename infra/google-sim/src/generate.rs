//! Deterministic directories: the same customer, counts and seed always give
//! the same users, groups and memberships.
//!
//! Shape: about 5% of users suspended, 2% archived, 10% with one or two
//! aliases, 1% admins; departments, titles and organizational units from
//! small lists. Group 0 ("All staff") holds every generated user (a large
//! group, for member paging); the others hold 3–25 users, a quarter of them
//! also nest a lower-numbered group (so nesting has no cycles), every fifth
//! has an alias, and the last one (with three or more groups) holds the
//! customer itself as a `CUSTOMER` member.

use crate::directory::Customer;
use crate::ids::{SplitMix64, fnv};
use crate::model::{MemberRole, SimGroup, SimUser};

const GIVEN: [&str; 16] = [
    "Ada",
    "Alan",
    "Grace",
    "Edsger",
    "Barbara",
    "Donald",
    "Margaret",
    "Ken",
    "Frances",
    "Dennis",
    "Radia",
    "Niklaus",
    "Sophie",
    "Tim",
    "Katherine",
    "Linus",
];
const FAMILY: [&str; 16] = [
    "Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Hamilton", "Thompson", "Allen",
    "Ritchie", "Perlman", "Wirth", "Wilson", "Berners", "Johnson", "Torvalds",
];
const DEPARTMENTS: [&str; 6] = [
    "Engineering",
    "Sales",
    "Finance",
    "Support",
    "Marketing",
    "Legal",
];
const TITLES: [&str; 5] = ["Engineer", "Manager", "Analyst", "Director", "Associate"];
const OUS: [&str; 5] = [
    "/",
    "/Staff",
    "/Staff/Engineering",
    "/Staff/Sales",
    "/Contractors",
];

pub(crate) fn generate(c: &mut Customer, users: u32, groups: u32, seed: u64) {
    let mut rng = SplitMix64::new(seed ^ fnv(&c.id));
    let domain = c.primary_domain.clone();
    let mut user_ids = Vec::with_capacity(users as usize);
    for i in 0..users {
        let given = GIVEN[rng.below(GIVEN.len() as u64) as usize];
        let family = FAMILY[rng.below(FAMILY.len() as u64) as usize];
        let local = format!("{}.{}{}", given.to_lowercase(), family.to_lowercase(), i);
        let suspended = rng.one_in(20);
        let archived = !suspended && rng.one_in(50);
        let aliases = if rng.one_in(10) {
            let mut a = vec![format!("{}{}@{domain}", given.to_lowercase(), i)];
            if rng.one_in(2) {
                a.push(format!("{}.{}@{domain}", family.to_lowercase(), i));
            }
            a
        } else {
            Vec::new()
        };
        let department = (!rng.one_in(8))
            .then(|| DEPARTMENTS[rng.below(DEPARTMENTS.len() as u64) as usize].to_string());
        let title =
            (!rng.one_in(8)).then(|| TITLES[rng.below(TITLES.len() as u64) as usize].to_string());
        let user = SimUser {
            id: String::new(),
            primary_email: format!("{local}@{domain}"),
            aliases,
            given_name: given.to_string(),
            family_name: family.to_string(),
            suspended,
            archived,
            is_admin: rng.one_in(100),
            org_unit_path: OUS[rng.below(OUS.len() as u64) as usize].to_string(),
            department,
            title,
        };
        user_ids.push(c.add_user(user));
    }

    let mut group_ids: Vec<String> = Vec::with_capacity(groups as usize);
    for g in 0..groups {
        let (email, name) = if g == 0 {
            (format!("all-staff@{domain}"), "All staff".to_string())
        } else {
            (format!("team-{g}@{domain}"), format!("Team {g}"))
        };
        let aliases = if g > 0 && g % 5 == 0 {
            vec![format!("team{g}-alias@{domain}")]
        } else {
            Vec::new()
        };
        let non_editable_aliases = if g > 0 && g % 7 == 0 {
            vec![format!("team-{g}@{domain}.test-google-a.com")]
        } else {
            Vec::new()
        };
        let id = c.add_group(SimGroup {
            id: String::new(),
            email,
            name,
            aliases,
            non_editable_aliases,
        });
        if g == 0 {
            for (i, u) in user_ids.iter().enumerate() {
                let role = if i == 0 {
                    MemberRole::Owner
                } else {
                    MemberRole::Member
                };
                c.add_member(&id, u, role);
            }
        } else if !user_ids.is_empty() {
            let n = 3 + rng.below(23);
            for k in 0..n {
                let u = &user_ids[rng.below(user_ids.len() as u64) as usize];
                let role = match k {
                    0 => MemberRole::Owner,
                    1 if rng.one_in(2) => MemberRole::Manager,
                    _ => MemberRole::Member,
                };
                c.add_member(&id, u, role);
            }
            // People from outside the customer: a Google account (listed
            // with an id) and an address that is none (without one).
            if g % 6 == 1 {
                c.add_external_member(
                    &id,
                    &format!("partner{g}@gmail.com"),
                    true,
                    MemberRole::Member,
                );
                c.add_external_member(
                    &id,
                    &format!("vendor{g}@supplier.example"),
                    false,
                    MemberRole::Member,
                );
            }
            if g >= 2 && rng.one_in(4) {
                // A lower-numbered group other than "All staff".
                let nested = &group_ids[1 + rng.below(u64::from(g) - 1) as usize];
                c.add_member(&id, nested, MemberRole::Member);
            }
        }
        group_ids.push(id);
    }
    if groups >= 3 {
        let last = group_ids.last().cloned().unwrap_or_default();
        let customer_id = c.id.clone();
        c.add_member(&last, &customer_id, MemberRole::Member);
    }
}
