//! The address index: each address of an account has one owner, a user or
//! a group of one connector, whatever else claims it.
//!
//! Between connectors the first owner keeps an address and the newcomer is
//! refused (a conflict). Inside one connector two objects may both list an
//! address (a directory's own data is less tidy than its rules): the
//! address goes to one of them by a fixed rule — a primary address before
//! an alias, then the object that held it first (in one batch: the lower
//! id) — and the others are remembered on the index item as contenders, so
//! that the address passes to the best of them when its owner lets it go.
//! Every decision is reported, naming both objects.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::domain::{AccountId, ConnectorId, EmailAddress, Group, SourceId, User};

use super::keys::{self, Scope};
use super::state::{StateStore, StoreError, from_item, to_attrs};
use super::table::{Cond, Item, Key, WriteOp};

/// What holds an address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnerKind {
    #[default]
    User,
    Group,
}

impl OwnerKind {
    fn is_user(&self) -> bool {
        *self == OwnerKind::User
    }

    pub fn label(self) -> &'static str {
        match self {
            OwnerKind::User => "user",
            OwnerKind::Group => "group",
        }
    }
}

/// Who holds an address within an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressOwner {
    pub connector: ConnectorId,
    /// The object's id (named `user` since addresses were users' only).
    pub user: SourceId,
    #[serde(default, skip_serializing_if = "OwnerKind::is_user")]
    pub kind: OwnerKind,
}

/// An object of the connector that lists an address it does not own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Contender {
    id: SourceId,
    #[serde(default, skip_serializing_if = "OwnerKind::is_user")]
    kind: OwnerKind,
    primary: bool,
}

/// The index item, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    account: AccountId,
    address: EmailAddress,
    #[serde(flatten)]
    owner: AddressOwner,
    /// Whether the owner has it as its primary address; items written
    /// before contention was decided have no flag, and their owners keep
    /// what they hold.
    #[serde(default = "primary_by_default")]
    primary: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    contenders: Vec<Contender>,
}

fn primary_by_default() -> bool {
    true
}

/// An object of the connector asking for one of its addresses.
#[derive(Debug, Clone)]
pub(super) struct Claim {
    pub object: SourceId,
    pub kind: OwnerKind,
    pub address: EmailAddress,
    pub primary: bool,
}

impl Claim {
    pub fn of_user(user: &User, address: &EmailAddress) -> Self {
        Claim {
            object: user.id.clone(),
            kind: OwnerKind::User,
            address: address.clone(),
            primary: *address == user.primary_email,
        }
    }

    pub fn of_group(group: &Group, address: &EmailAddress) -> Self {
        Claim {
            object: group.id.clone(),
            kind: OwnerKind::Group,
            address: address.clone(),
            primary: group.mail.as_ref() == Some(address),
        }
    }

    fn contender(&self) -> Contender {
        Contender {
            id: self.object.clone(),
            kind: self.kind,
            primary: self.primary,
        }
    }
}

/// An address two objects of one connector list, and who got it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedAddress {
    pub address: EmailAddress,
    pub owner: (OwnerKind, SourceId),
    pub owner_primary: bool,
    pub other: (OwnerKind, SourceId),
    pub other_primary: bool,
}

impl SharedAddress {
    /// The run's warning text.
    pub fn describe(&self) -> String {
        let role = |p: bool| if p { "primary address" } else { "alias" };
        let why = if self.owner_primary && !self.other_primary {
            "a primary address goes before an alias"
        } else {
            "the object that held it first keeps it"
        };
        format!(
            "{} is the {} of {} {} and the {} of {} {}; it belongs to {} {} ({why}), and look-ups find {}",
            self.address,
            role(self.owner_primary),
            self.owner.0.label(),
            self.owner.1,
            role(self.other_primary),
            self.other.0.label(),
            self.other.1,
            self.owner.0.label(),
            self.owner.1,
            self.owner.1,
        )
    }
}

/// What became of one claim.
#[derive(Debug, Clone)]
pub(super) enum Claimed {
    /// The claimant holds it (or now does).
    Owned,
    /// Another object of the connector keeps it.
    Contended,
    /// Another connector of the account holds it.
    Foreign(AddressOwner),
}

/// Claims decided, with the writes that make them so.
pub(super) struct Decided {
    pub outcomes: Vec<Claimed>,
    pub shared: Vec<SharedAddress>,
    /// Each write, with the claims it decides and the item it replaces
    /// (to undo it).
    pub writes: Vec<(WriteOp, Vec<usize>, Option<Item>)>,
}

fn rank(primary: bool, incumbent: bool, id: &SourceId) -> (bool, bool, std::cmp::Reverse<&str>) {
    (primary, incumbent, std::cmp::Reverse(id.as_str()))
}

impl StateStore {
    fn address_entry(&self, scope: &Scope, entry: &Entry) -> Item {
        let mut attrs = to_attrs(entry);
        attrs.insert("account".into(), json!(scope.account));
        Item::new(keys::address(&scope.account, &entry.address), attrs)
            .with_gsi1(keys::address_gsi(&scope.account, &entry.address))
    }

    /// The index items of these addresses that exist.
    async fn entries(
        &self,
        account: &AccountId,
        addresses: &[&EmailAddress],
    ) -> Result<HashMap<EmailAddress, (Item, Entry)>, StoreError> {
        let keys: Vec<Key> = addresses
            .iter()
            .map(|a| keys::address(account, a))
            .collect();
        let mut found = HashMap::new();
        for item in self.table.get_many(&keys).await? {
            let entry: Entry = from_item("address", item.clone())?;
            found.insert(entry.address.clone(), (item, entry));
        }
        Ok(found)
    }

    pub(super) async fn address_owners(
        &self,
        account: &AccountId,
        addresses: &[&EmailAddress],
    ) -> Result<HashMap<EmailAddress, AddressOwner>, StoreError> {
        Ok(self
            .entries(account, addresses)
            .await?
            .into_iter()
            .map(|(a, (_, e))| (a, e.owner))
            .collect())
    }

    /// Decides every claim against the index and the batch (see the module
    /// documentation for the rule); writes nothing.
    pub(super) async fn decide_claims(
        &self,
        scope: &Scope,
        claims: &[Claim],
    ) -> Result<Decided, StoreError> {
        let addresses: Vec<&EmailAddress> = claims.iter().map(|c| &c.address).collect();
        let stored = self.entries(&scope.account, &addresses).await?;
        let mut by_address: BTreeMap<&EmailAddress, Vec<usize>> = BTreeMap::new();
        for (i, c) in claims.iter().enumerate() {
            by_address.entry(&c.address).or_default().push(i);
        }
        let mut decided = Decided {
            outcomes: vec![Claimed::Owned; claims.len()],
            shared: Vec::new(),
            writes: Vec::new(),
        };
        for (address, asking) in by_address {
            let held = stored.get(address);
            if let Some((_, e)) = held.filter(|(_, e)| e.owner.connector != scope.connector) {
                for i in asking {
                    decided.outcomes[i] = Claimed::Foreign(e.owner.clone());
                }
                continue;
            }
            self.decide_one(scope, claims, &asking, held, &mut decided);
        }
        Ok(decided)
    }

    /// One address, claimed by `asking` of `claims`, held as `held` by this
    /// connector or by no one.
    fn decide_one(
        &self,
        scope: &Scope,
        claims: &[Claim],
        asking: &[usize],
        held: Option<&(Item, Entry)>,
        decided: &mut Decided,
    ) {
        let incumbent = held.map(|(_, e)| e);
        // Everyone in the running: the incumbent (as its claim in this batch
        // says, if it makes one) and the batch.
        let mut running: Vec<(Contender, bool, Option<usize>)> = Vec::new();
        if let Some(e) = incumbent
            && !asking.iter().any(|i| claims[*i].object == e.owner.user)
        {
            let c = Contender {
                id: e.owner.user.clone(),
                kind: e.owner.kind,
                primary: e.primary,
            };
            running.push((c, true, None));
        }
        for i in asking {
            let c = &claims[*i];
            let was = incumbent.is_some_and(|e| e.owner.user == c.object);
            running.push((c.contender(), was, Some(*i)));
        }
        let Some(win) = (0..running.len()).max_by_key(|k| {
            let (c, was, _) = &running[*k];
            rank(c.primary, *was, &c.id)
        }) else {
            return;
        };
        let (winner, _, _) = running[win].clone();
        let mut contenders: Vec<Contender> =
            incumbent.map(|e| e.contenders.clone()).unwrap_or_default();
        for (k, (c, _, _)) in running.iter().enumerate() {
            if k != win {
                contenders.retain(|o| o.id != c.id);
                contenders.push(c.clone());
            }
        }
        contenders.retain(|o| o.id != winner.id);
        for (k, (c, _, at)) in running.iter().enumerate() {
            if k == win {
                continue;
            }
            if let Some(i) = at {
                decided.outcomes[*i] = Claimed::Contended;
            }
            decided.shared.push(SharedAddress {
                address: claims[asking[0]].address.clone(),
                owner: (winner.kind, winner.id.clone()),
                owner_primary: winner.primary,
                other: (c.kind, c.id.clone()),
                other_primary: c.primary,
            });
        }
        let unchanged = incumbent.is_some_and(|e| {
            e.owner.user == winner.id && e.primary == winner.primary && e.contenders == contenders
        });
        if unchanged {
            return;
        }
        let entry = Entry {
            account: scope.account.clone(),
            address: claims[asking[0]].address.clone(),
            owner: AddressOwner {
                connector: scope.connector.clone(),
                user: winner.id.clone(),
                kind: winner.kind,
            },
            primary: winner.primary,
            contenders,
        };
        let cond = match incumbent {
            Some(e) => Cond::eq("connector", scope.connector.as_str())
                .and(Cond::eq("user", e.owner.user.as_str())),
            None => Cond::NotExists,
        };
        decided.writes.push((
            WriteOp::put_if(self.address_entry(scope, &entry), cond),
            asking.to_vec(),
            held.map(|(item, _)| item.clone()),
        ));
    }

    /// An undo of a claim written: the item as it was, or none.
    pub(super) fn undo_claim(
        scope: &Scope,
        address: &EmailAddress,
        object: &SourceId,
        before: Option<Item>,
    ) -> WriteOp {
        let ours =
            Cond::eq("connector", scope.connector.as_str()).and(Cond::eq("user", object.as_str()));
        match before {
            Some(item) => WriteOp::put_if(item, ours),
            None => WriteOp::delete_if(keys::address(&scope.account, address), ours),
        }
    }

    /// Lets addresses go that `object` no longer lists (or that went with
    /// it): an address it owns passes to its best contender that still
    /// lists it, or is freed; one it contended for forgets it.
    pub(super) async fn release_addresses(
        &self,
        scope: &Scope,
        object: &SourceId,
        addresses: &[&EmailAddress],
    ) -> Result<(), StoreError> {
        if addresses.is_empty() {
            return Ok(());
        }
        let entries = self.entries(&scope.account, addresses).await?;
        let mut ops = Vec::new();
        for (_, (_, mut e)) in entries {
            if e.owner.connector != scope.connector {
                continue;
            }
            let cond = Cond::eq("connector", scope.connector.as_str())
                .and(Cond::eq("user", e.owner.user.as_str()));
            if e.owner.user != *object {
                if e.contenders.iter().any(|c| c.id == *object) {
                    e.contenders.retain(|c| c.id != *object);
                    ops.push(WriteOp::put_if(self.address_entry(scope, &e), cond));
                }
                continue;
            }
            let key = keys::address(&scope.account, &e.address);
            match self.heir(scope, &e).await? {
                Some(heir) => {
                    e.contenders.retain(|c| c.id != heir.id);
                    e.owner.user = heir.id;
                    e.owner.kind = heir.kind;
                    e.primary = heir.primary;
                    ops.push(WriteOp::put_if(self.address_entry(scope, &e), cond));
                }
                None => ops.push(WriteOp::delete_if(key, cond)),
            }
        }
        self.table.write_many(ops).await?;
        Ok(())
    }

    /// Hands what objects of the connector own or contend for among
    /// `addresses` to the same objects under their new ids (`ids`: old →
    /// new, see [`StateStore::rekey`]); returns how many index items
    /// changed.
    pub(super) async fn rekey_addresses(
        &self,
        scope: &Scope,
        addresses: &[&EmailAddress],
        ids: &HashMap<SourceId, SourceId>,
    ) -> Result<u64, StoreError> {
        let mut ops = Vec::new();
        for (_, (_, mut e)) in self.entries(&scope.account, addresses).await? {
            if e.owner.connector != scope.connector {
                continue;
            }
            let cond = Cond::eq("connector", scope.connector.as_str())
                .and(Cond::eq("user", e.owner.user.as_str()));
            let mut changed = false;
            if let Some(new) = ids.get(&e.owner.user) {
                e.owner.user = new.clone();
                changed = true;
            }
            for c in &mut e.contenders {
                if let Some(new) = ids.get(&c.id) {
                    c.id = new.clone();
                    changed = true;
                }
            }
            if changed {
                ops.push(WriteOp::put_if(self.address_entry(scope, &e), cond));
            }
        }
        let written = ops.len() as u64;
        self.table.write_many(ops).await?;
        Ok(written)
    }

    /// The best contender for an address that still lists it.
    async fn heir(&self, scope: &Scope, e: &Entry) -> Result<Option<Contender>, StoreError> {
        let mut ranked = e.contenders.clone();
        ranked.sort_by(|a, b| rank(b.primary, false, &b.id).cmp(&rank(a.primary, false, &a.id)));
        for c in ranked {
            let lists = match c.kind {
                OwnerKind::User => self.get_user(scope, &c.id).await?.map(|u| {
                    (
                        u.addresses().any(|a| *a == e.address),
                        u.primary_email == e.address,
                    )
                }),
                OwnerKind::Group => self.get_group(scope, &c.id).await?.map(|g| {
                    (
                        g.addresses().any(|a| *a == e.address),
                        g.mail.as_ref() == Some(&e.address),
                    )
                }),
            };
            if let Some((true, primary)) = lists {
                return Ok(Some(Contender { primary, ..c }));
            }
        }
        Ok(None)
    }
}
