//! The connector's options applied to what the source says.

use crate::domain::{SyncOptions, WarningKind};
use crate::source::{Change, Removal};

/// Applies "acknowledge disabled accounts" and the email domains filter.
///
/// - A user whose primary address is outside the listed domains is out of
///   scope: it is not kept (and a stored copy is removed).
/// - Aliases outside the listed domains are dropped.
/// - With "acknowledge disabled" off, users stay enabled whatever the source
///   says.
/// - A group keeps its mail address only if it is in scope.
pub fn apply(options: &SyncOptions, change: Change) -> Change {
    match change {
        Change::User(mut user) => {
            let filter = &options.email_domains;
            if !filter.admits(&user.primary_email) {
                return Change::RemoveUser {
                    reason: Removal::Skipped {
                        kind: WarningKind::OutOfScope,
                        detail: format!(
                            "primary address domain {} is not in the connector's email domains ({filter})",
                            user.primary_email.domain()
                        ),
                    },
                    id: user.id,
                };
            }
            user.aliases.retain(|a| filter.admits(a));
            if !options.acknowledge_disabled {
                user.enabled = true;
            }
            Change::User(user)
        }
        Change::Group(mut group) => {
            if group
                .mail
                .as_ref()
                .is_some_and(|m| !options.email_domains.admits(m))
            {
                group.mail = None;
            }
            group.aliases.retain(|a| options.email_domains.admits(a));
            Change::Group(group)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{SourceId, User};

    fn user(primary: &str, aliases: &[&str], enabled: bool) -> Change {
        let mut u = User::new(SourceId::new("u").unwrap(), primary.parse().unwrap())
            .with_aliases(aliases.iter().map(|a| a.parse().unwrap()));
        u.enabled = enabled;
        Change::User(u)
    }

    #[test]
    fn acknowledge_disabled_decides_the_enabled_flag() {
        let off = SyncOptions::default();
        let Change::User(u) = apply(&off, user("a@x.com", &[], false)) else {
            panic!()
        };
        assert!(
            u.enabled,
            "off: a user disabled at the source stays enabled"
        );
        let on = SyncOptions {
            acknowledge_disabled: true,
            ..Default::default()
        };
        let Change::User(u) = apply(&on, user("a@x.com", &[], false)) else {
            panic!()
        };
        assert!(!u.enabled);
    }

    #[test]
    fn the_domain_filter_scopes_users_and_trims_aliases() {
        let o = SyncOptions {
            email_domains: "x.com".parse().unwrap(),
            ..Default::default()
        };
        let Change::User(u) = apply(&o, user("a@X.com", &["b@x.com", "c@y.com"], true)) else {
            panic!()
        };
        assert_eq!(u.aliases.len(), 1);
        let c = apply(&o, user("a@y.com", &[], true));
        assert!(matches!(
            c,
            Change::RemoveUser {
                reason: Removal::Skipped {
                    kind: WarningKind::OutOfScope,
                    ..
                },
                ..
            }
        ));
    }
}
