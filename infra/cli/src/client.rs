//! The admin API as the CLI calls it: one place that builds (and encodes)
//! its paths, and typed answers. The calls go in process to the same
//! router the Lambda function serves (see [`crate::local`]).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use dirsync_shared::domain::{Account, AuditRecord, Connector, Group, SyncRun, User};
use dirsync_shared::engine::PlanEntry;
use dirsync_shared::source::ConnectionReport;

use crate::exit::Failure;
use crate::local::Local;

/// The most a listing hands out per page.
const PAGE: u32 = 1000;

/// An admin-API path from its segments, each percent-encoded (a group
/// named `All Staff`, an address with `+`).
pub fn path(segments: &[&str]) -> Result<String, Failure> {
    if let Some(bad) = segments.iter().find(|s| matches!(**s, "" | "." | "..")) {
        return Err(Failure::refused(format!(
            "{bad:?} names nothing: give an id, an address or a name"
        )));
    }
    let mut url = url::Url::parse("http://admin.invalid/").expect("a base URL");
    url.path_segments_mut()
        .expect("a base that takes segments")
        .extend(segments);
    Ok(url.path().to_owned())
}

fn query(pairs: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    q.finish()
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Accounts {
    pub accounts: Vec<Account>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Connectors {
    pub connectors: Vec<Connector>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Runs {
    pub runs: Vec<SyncRun>,
    pub next: Option<String>,
}

/// A run with its staged actions, counted per object type and action.
#[derive(Debug, Serialize, Deserialize)]
pub struct RunView {
    pub run: SyncRun,
    pub staged_actions: Vec<PlanEntry>,
    #[serde(default)]
    pub summary: Vec<Tally>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Tally {
    pub object_type: String,
    pub action: String,
    pub count: u64,
}

/// A user found by address, with the connector that holds it.
#[derive(Debug, Serialize, Deserialize)]
pub struct FoundUser {
    pub connector: String,
    pub user: User,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Grants {
    pub principals: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Grant {
    pub account: String,
    pub principal: String,
    pub granted: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Audit {
    pub records: Vec<AuditRecord>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SecretSet {
    pub stored: bool,
    pub test: ConnectionReport,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ConsentStart {
    pub consent_url: String,
    pub expires_at: String,
}

/// An object named in a look-up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRef {
    pub id: String,
    pub primary_email: Option<String>,
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupRef {
    pub id: String,
    pub name: String,
    pub mail: Option<String>,
}

/// A group a user belongs to, directly (depth 1) or through `via`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupRow {
    pub id: String,
    /// Absent for a group no longer stored.
    pub name: Option<String>,
    pub mail: Option<String>,
    pub kind: Option<String>,
    pub depth: u32,
    pub via: Option<String>,
}

/// A member of a group, directly (depth 1) or through `via`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberRow {
    pub id: String,
    pub kind: String,
    pub name: Option<String>,
    pub address: Option<String>,
    pub depth: u32,
    pub via: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct UserGroupsPage {
    user: UserRef,
    groups: Vec<GroupRow>,
    next: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct MembersPage {
    group: GroupRef,
    members: Vec<MemberRow>,
    next: Option<String>,
}

/// A listing read to its end, or to a limit: `more` says whether rows
/// were left unread.
#[derive(Debug, Serialize, Deserialize)]
pub struct Listing<O, R> {
    #[serde(flatten)]
    pub of: O,
    pub rows: Vec<R>,
    pub more: bool,
}

/// Whose listing a look-up is.
#[derive(Debug, Serialize, Deserialize)]
pub struct OfUser {
    pub user: UserRef,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct OfGroup {
    pub group: GroupRef,
}

pub struct Client<'a>(pub &'a Local);

impl Client<'_> {
    async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<T, Failure> {
        let value = self
            .0
            .call(method, path, body)
            .await
            .map_err(|(status, message)| Failure::from_status(status, message))?;
        serde_json::from_value(value)
            .map_err(|e| Failure::internal(format!("{method} {path} answered unexpectedly: {e}")))
    }

    fn connector_path(account: &str, connector: &str, rest: &[&str]) -> Result<String, Failure> {
        let mut segments = vec!["accounts", account, "connectors", connector];
        segments.extend_from_slice(rest);
        path(&segments)
    }

    // ---- accounts -----------------------------------------------------

    pub async fn create_account(
        &self,
        id: &str,
        name: &str,
        region: &str,
    ) -> Result<Account, Failure> {
        let body = json!({"id": id, "name": name, "region": region});
        self.call("POST", "/accounts", Some(body)).await
    }

    /// Every account, page after page.
    pub async fn accounts(&self) -> Result<Accounts, Failure> {
        #[derive(Deserialize)]
        struct Page {
            accounts: Vec<Account>,
            next: Option<String>,
        }
        let mut all = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut pairs = vec![("limit", "1000")];
            if let Some(t) = &next {
                pairs.push(("next", t));
            }
            let page: Page = self
                .call("GET", &format!("/accounts?{}", query(&pairs)), None)
                .await?;
            all.extend(page.accounts);
            match page.next {
                Some(t) => next = Some(t),
                None => return Ok(Accounts { accounts: all }),
            }
        }
    }

    pub async fn account(&self, id: &str) -> Result<Account, Failure> {
        self.call("GET", &path(&["accounts", id])?, None).await
    }

    /// The account-wide hold (removals of every connector staged while one
    /// is in trouble), on or off.
    pub async fn change_account(&self, id: &str, hold: bool) -> Result<Account, Failure> {
        let body = json!({"hold_on_connector_trouble": hold});
        self.call("PATCH", &path(&["accounts", id])?, Some(body))
            .await
    }

    pub async fn grants(&self, account: &str) -> Result<Grants, Failure> {
        self.call("GET", &path(&["accounts", account, "grants"])?, None)
            .await
    }

    pub async fn grant(&self, account: &str, principal: &str) -> Result<Grant, Failure> {
        let body = json!({"principal": principal});
        self.call("POST", &path(&["accounts", account, "grants"])?, Some(body))
            .await
    }

    pub async fn revoke(&self, account: &str, principal: &str) -> Result<Grant, Failure> {
        let q = query(&[("principal", principal)]);
        let p = format!("{}?{q}", path(&["accounts", account, "grants"])?);
        self.call("DELETE", &p, None).await
    }

    pub async fn audit(&self, account: &str, limit: u32) -> Result<Audit, Failure> {
        let p = format!("{}?limit={limit}", path(&["accounts", account, "audit"])?);
        self.call("GET", &p, None).await
    }

    /// The user holding an address, in whichever connector of the account.
    pub async fn user_by_address(
        &self,
        account: &str,
        address: &str,
    ) -> Result<FoundUser, Failure> {
        let p = format!(
            "{}?{}",
            path(&["accounts", account, "users"])?,
            query(&[("address", address)])
        );
        self.call("GET", &p, None).await
    }

    // ---- connectors ---------------------------------------------------

    pub async fn create_connector(
        &self,
        account: &str,
        spec: Value,
        secret: Option<String>,
    ) -> Result<Connector, Failure> {
        let body = json!({"connector": spec, "secret": secret});
        self.call(
            "POST",
            &path(&["accounts", account, "connectors"])?,
            Some(body),
        )
        .await
    }

    pub async fn connectors(&self, account: &str) -> Result<Connectors, Failure> {
        self.call("GET", &path(&["accounts", account, "connectors"])?, None)
            .await
    }

    pub async fn connector(&self, account: &str, connector: &str) -> Result<Connector, Failure> {
        self.call("GET", &Self::connector_path(account, connector, &[])?, None)
            .await
    }

    /// Changes settings of the connector as it is now (its version read
    /// first, so that two changes cannot overwrite each other).
    pub async fn change_connector(
        &self,
        account: &str,
        connector: &str,
        mut patch: serde_json::Map<String, Value>,
    ) -> Result<Connector, Failure> {
        let current = self.connector(account, connector).await?;
        patch.insert("version".into(), json!(current.version));
        let p = Self::connector_path(account, connector, &[])?;
        self.call("PATCH", &p, Some(Value::Object(patch))).await
    }

    pub async fn delete_connector(&self, account: &str, connector: &str) -> Result<Value, Failure> {
        self.call(
            "DELETE",
            &Self::connector_path(account, connector, &[])?,
            None,
        )
        .await
    }

    pub async fn set_secret(
        &self,
        account: &str,
        connector: &str,
        value: String,
        force: bool,
    ) -> Result<SecretSet, Failure> {
        let current = self.connector(account, connector).await?;
        let body = json!({"value": value, "version": current.version, "force": force});
        let p = Self::connector_path(account, connector, &["secret"])?;
        self.call("PUT", &p, Some(body)).await
    }

    pub async fn test(&self, account: &str, connector: &str) -> Result<ConnectionReport, Failure> {
        let p = Self::connector_path(account, connector, &["test"])?;
        self.call("POST", &p, None).await
    }

    pub async fn sync_now(
        &self,
        account: &str,
        connector: &str,
        full: bool,
    ) -> Result<Value, Failure> {
        let p = Self::connector_path(account, connector, &["sync"])?;
        self.call("POST", &p, Some(json!({"full": full}))).await
    }

    /// Starts admin consent (`migrate`: of a legacy connector).
    pub async fn consent(
        &self,
        account: &str,
        connector: &str,
        migrate: bool,
    ) -> Result<ConsentStart, Failure> {
        let verb = if migrate { "migrate" } else { "consent" };
        let p = Self::connector_path(account, connector, &[verb])?;
        self.call("POST", &p, None).await
    }

    /// Names another tenant for a consent connector not yet consented.
    pub async fn change_tenant(
        &self,
        account: &str,
        connector: &str,
        tenant: &str,
    ) -> Result<Value, Failure> {
        let p = Self::connector_path(account, connector, &["tenant"])?;
        self.call("POST", &p, Some(json!({"tenant": tenant}))).await
    }

    // ---- runs ---------------------------------------------------------

    pub async fn runs(&self, account: &str, connector: &str, limit: u32) -> Result<Runs, Failure> {
        let p = format!(
            "{}?limit={limit}",
            Self::connector_path(account, connector, &["runs"])?
        );
        self.call("GET", &p, None).await
    }

    pub async fn run(&self, account: &str, connector: &str, run: &str) -> Result<RunView, Failure> {
        let p = Self::connector_path(account, connector, &["runs", run])?;
        self.call("GET", &p, None).await
    }

    /// Approves (or rejects) a staged run.
    pub async fn review(
        &self,
        account: &str,
        connector: &str,
        run: &str,
        approve: bool,
    ) -> Result<SyncRun, Failure> {
        let verb = if approve { "approve" } else { "reject" };
        let p = Self::connector_path(account, connector, &["runs", run, verb])?;
        self.call("POST", &p, None).await
    }

    // ---- look-ups -----------------------------------------------------

    /// A user of the connector by id, address or name.
    pub async fn user(&self, account: &str, connector: &str, user: &str) -> Result<User, Failure> {
        #[derive(Deserialize)]
        struct One {
            user: User,
        }
        let p = Self::connector_path(account, connector, &["users", user])?;
        Ok(self.call::<One>("GET", &p, None).await?.user)
    }

    /// A group of the connector by id, address or name.
    pub async fn group(
        &self,
        account: &str,
        connector: &str,
        group: &str,
    ) -> Result<Group, Failure> {
        #[derive(Deserialize)]
        struct One {
            group: Group,
        }
        let p = Self::connector_path(account, connector, &["groups", group])?;
        Ok(self.call::<One>("GET", &p, None).await?.group)
    }

    /// The groups of a user, every page followed up to `limit` rows.
    pub async fn user_groups(
        &self,
        l: &Lookup<'_>,
        limit: Option<usize>,
    ) -> Result<Listing<OfUser, GroupRow>, Failure> {
        let paths = |object: &str| {
            Self::connector_path(l.account, l.connector, &["users", object, "groups"])
        };
        let (first, rows, more) = self
            .follow(
                l,
                paths,
                limit,
                |p: UserGroupsPage| (p.user, p.groups, p.next),
                |u| &u.id,
            )
            .await?;
        Ok(Listing {
            of: OfUser { user: first },
            rows,
            more,
        })
    }

    /// The members of a group, every page followed up to `limit` rows.
    pub async fn group_members(
        &self,
        l: &Lookup<'_>,
        limit: Option<usize>,
    ) -> Result<Listing<OfGroup, MemberRow>, Failure> {
        let paths = |object: &str| {
            Self::connector_path(l.account, l.connector, &["groups", object, "members"])
        };
        let (first, rows, more) = self
            .follow(
                l,
                paths,
                limit,
                |p: MembersPage| (p.group, p.members, p.next),
                |g| &g.id,
            )
            .await?;
        Ok(Listing {
            of: OfGroup { group: first },
            rows,
            more,
        })
    }

    /// Reads a listing page after page until it ends or `limit` rows are
    /// in; says whether rows were left. The object is named as given for
    /// the first page and by the id that page resolved it to afterwards
    /// (a name is resolved by reading the connector's objects: once).
    async fn follow<P: DeserializeOwned, O, R>(
        &self,
        l: &Lookup<'_>,
        paths: impl Fn(&str) -> Result<String, Failure>,
        limit: Option<usize>,
        split: impl Fn(P) -> (O, Vec<R>, Option<String>),
        id_of: impl Fn(&O) -> &str,
    ) -> Result<(O, Vec<R>, bool), Failure> {
        let mut token: Option<String> = None;
        let mut rows = Vec::new();
        let mut of: Option<O> = None;
        loop {
            let base = paths(of.as_ref().map_or(l.object, &id_of))?;
            let transitive = l.transitive.to_string();
            let limit_text = PAGE.to_string();
            let mut pairs = vec![
                ("limit", limit_text.as_str()),
                ("transitive", transitive.as_str()),
            ];
            if let Some(t) = &token {
                pairs.push(("next", t));
            }
            let page: P = self
                .call("GET", &format!("{base}?{}", query(&pairs)), None)
                .await?;
            let (o, mut found, next) = split(page);
            of.get_or_insert(o);
            rows.append(&mut found);
            if let Some(limit) = limit
                && rows.len() >= limit
            {
                let more = rows.len() > limit || next.is_some();
                rows.truncate(limit);
                return Ok((of.expect("a first page"), rows, more));
            }
            match next {
                Some(n) => token = Some(n),
                None => return Ok((of.expect("a first page"), rows, false)),
            }
        }
    }
}

/// What a look-up names: the connector, the object (id, address or name)
/// and whether through nested groups.
pub struct Lookup<'a> {
    pub account: &'a str,
    pub connector: &'a str,
    pub object: &'a str,
    pub transitive: bool,
}
