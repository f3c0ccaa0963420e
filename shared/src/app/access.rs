//! Who calls the admin API, and which accounts they may act for.
//!
//! IAM only says *who* signed a request; every caller may be another
//! customer. So each request under `/accounts/{a}` is checked against a
//! grant: the platform's administrators (the deployment's
//! `DIRSYNC_PLATFORM_ADMINS`, and the operator on a local machine) act for
//! every account; any other principal only for the accounts an
//! administrator granted it (`POST /accounts/{a}/grants`).

use std::fmt;

use crate::domain::AccountId;

use super::{App, AppError};

/// The principal behind a request, as the edge established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The ARN as signed: for an assumed role, the session.
    arn: Option<String>,
    /// The principal grants usually name: for an assumed role, the role.
    principal: Option<String>,
    /// The operator of a local run (the CLI, `dirsync serve` with its
    /// token): the deployment is theirs.
    operator: bool,
}

impl Caller {
    /// A caller signed by IAM. An assumed role's session
    /// (`arn:aws:sts::ACCT:assumed-role/ROLE/SESSION`) is the role
    /// (`arn:aws:iam::ACCT:role/ROLE`): grants name roles, not sessions.
    pub fn iam(arn: Option<String>) -> Self {
        Self {
            principal: arn.as_deref().map(normalise_arn),
            arn,
            operator: false,
        }
    }

    /// The operator of this machine, named for the records.
    pub fn operator(name: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            arn: Some(name.clone()),
            principal: Some(name),
            operator: true,
        }
    }

    /// A request no one signed (it is refused everywhere but the public
    /// consent callback).
    pub fn anonymous() -> Self {
        Self {
            arn: None,
            principal: None,
            operator: false,
        }
    }

    pub fn principal(&self) -> Option<&str> {
        self.principal.as_deref()
    }

    /// The ARN as signed (an assumed role's session), for the records.
    pub fn arn(&self) -> Option<&str> {
        self.arn.as_deref()
    }

    pub fn is_operator(&self) -> bool {
        self.operator
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.arn.as_deref().unwrap_or("anonymous"))
    }
}

/// `arn:aws:sts::ACCT:assumed-role/ROLE/SESSION` → `arn:aws:iam::ACCT:role/ROLE`,
/// and a role's path is dropped (`role/aws-reserved/sso.amazonaws.com/X` →
/// `role/X`): an assumed role's ARN never carries the path, so a grant
/// naming it would never match.
fn normalise_arn(arn: &str) -> String {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        [_, partition, "sts", _, account, resource] => {
            if let Some(rest) = resource.strip_prefix("assumed-role/")
                && let Some((role, _session)) = rest.rsplit_once('/')
            {
                return format!("arn:{partition}:iam::{account}:role/{role}");
            }
        }
        [_, partition, "iam", _, account, resource] => {
            if let Some(rest) = resource.strip_prefix("role/")
                && let Some((_path, role)) = rest.rsplit_once('/')
            {
                return format!("arn:{partition}:iam::{account}:role/{role}");
            }
        }
        _ => {}
    }
    arn.to_owned()
}

/// A principal that may be granted access: an IAM ARN (or, locally, any
/// name), printable, without the key separator `#`.
pub fn check_principal(p: &str) -> Result<String, AppError> {
    let p = p.trim();
    let ok = !p.is_empty() && p.len() <= 512 && p.chars().all(|c| c.is_ascii_graphic() && c != '#');
    if ok {
        Ok(if p.contains(":assumed-role/") {
            p.to_owned()
        } else {
            normalise_arn(p)
        })
    } else {
        Err(AppError::BadRequest(
            "principal must be an IAM ARN such as arn:aws:iam::123456789012:role/acme-admins \
             (printable, no spaces or '#', at most 512 characters)"
                .into(),
        ))
    }
}

impl App {
    /// Whether the caller administers the whole platform.
    pub fn is_platform_admin(&self, caller: &Caller) -> bool {
        caller.is_operator()
            || caller
                .principal()
                .is_some_and(|p| self.settings.platform_admins.iter().any(|a| a == p))
    }

    /// Refuses unless the caller may act for `account`. The refusal is the
    /// same whether or not the account exists, so nobody learns of another
    /// customer's accounts by probing.
    pub async fn authorize(&self, caller: &Caller, account: &AccountId) -> Result<(), AppError> {
        if self.is_platform_admin(caller) {
            return Ok(());
        }
        let Some(principal) = caller.principal() else {
            return Err(AppError::Forbidden(
                "the request is not signed; sign it with SigV4 for execute-api".into(),
            ));
        };
        // A grant names a role (any of its sessions) or one session.
        if self.store.has_grant(account, principal).await? {
            return Ok(());
        }
        if let Some(arn) = caller.arn().filter(|a| *a != principal)
            && self.store.has_grant(account, arn).await?
        {
            return Ok(());
        }
        Err(AppError::Forbidden(format!(
            "{principal} may not act for account {account}; a platform administrator grants access \
             with POST /accounts/{account}/grants"
        )))
    }

    /// Refuses unless the caller administers the platform.
    pub fn authorize_platform(&self, caller: &Caller) -> Result<(), AppError> {
        if self.is_platform_admin(caller) {
            Ok(())
        } else {
            Err(AppError::Forbidden(format!(
                "{caller} is not a platform administrator (DIRSYNC_PLATFORM_ADMINS); only they create accounts \
                 and grant access"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assumed_role_session_is_its_role() {
        let c = Caller::iam(Some(
            "arn:aws:sts::123456789012:assumed-role/acme-admins/alice@acme.com".into(),
        ));
        assert_eq!(
            c.principal(),
            Some("arn:aws:iam::123456789012:role/acme-admins")
        );
        let u = Caller::iam(Some("arn:aws:iam::123456789012:user/ops".into()));
        assert_eq!(u.principal(), Some("arn:aws:iam::123456789012:user/ops"));
        assert!(!u.is_operator());
        assert_eq!(Caller::anonymous().to_string(), "anonymous");
    }

    #[test]
    fn principals_with_separators_or_spaces_are_refused() {
        assert!(check_principal("arn:aws:iam::1:role/a#b").is_err());
        assert!(check_principal("arn:aws:iam::1:role/a b").is_err());
        assert!(check_principal("").is_err());
        assert_eq!(
            check_principal(" arn:aws:iam::1:role/a ").unwrap(),
            "arn:aws:iam::1:role/a"
        );
        assert_eq!(
            check_principal(
                "arn:aws:iam::1:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Admin_1"
            )
            .unwrap(),
            "arn:aws:iam::1:role/AWSReservedSSO_Admin_1",
            "the path of a role is not in its sessions' ARNs"
        );
        // A session may be granted on its own (the console's per-account sessions).
        let s = "arn:aws:sts::1:assumed-role/console/acme";
        assert_eq!(check_principal(s).unwrap(), s);
    }
}
