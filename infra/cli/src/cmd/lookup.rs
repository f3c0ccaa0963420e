//! `dirsync user`, `groups`, `members` and `export`: what a connector
//! synced, found by id, address or name, every page followed.

use dirsync_shared::domain::{AccountId, ConnectorId};
use dirsync_shared::store::{Scope, all_pages};
use serde_json::json;

use super::Ctx;
use crate::client::{FoundUser, Lookup};
use crate::exit::{Failure, Outcome};
use crate::out::{cell, code, show, table};

/// `--limit N` and `--transitive` of a listing.
#[derive(clap::Args)]
pub struct ListArgs {
    /// Through nested groups too (each once, cycles included).
    #[arg(long)]
    pub transitive: bool,
    /// Show at most N rows, and say how many more there are.
    #[arg(long)]
    pub limit: Option<usize>,
}

/// A user: by address across the account, or in one connector by id,
/// address or name.
pub async fn user(ctx: &Ctx<'_>, account: &str, connector: Option<&str>, user: &str) -> Outcome {
    let found = match connector {
        Some(c) => FoundUser {
            connector: c.to_owned(),
            user: ctx.api.user(account, c, user).await?,
        },
        None => ctx.api.user_by_address(account, user).await?,
    };
    show(ctx.json, &found, |f| {
        let u = &f.user;
        let aliases: Vec<String> = u.aliases.iter().map(ToString::to_string).collect();
        format!(
            "{} <{}> in connector {}; id {}; enabled: {}; aliases: {}",
            cell(&u.display_name),
            u.primary_email,
            f.connector,
            u.id,
            u.enabled,
            if aliases.is_empty() {
                "-".into()
            } else {
                aliases.join(", ")
            }
        )
    });
    Ok(())
}

/// A group of a connector by id, address or name.
pub async fn group(ctx: &Ctx<'_>, account: &str, connector: &str, group: &str) -> Outcome {
    let g = ctx.api.group(account, connector, group).await?;
    show(ctx.json, &g, |g| {
        let mut addresses: Vec<String> = g.mail.iter().map(ToString::to_string).collect();
        addresses.extend(g.aliases.iter().map(ToString::to_string));
        let addresses = if addresses.is_empty() {
            "no address".to_owned()
        } else {
            addresses.join(", ")
        };
        format!("{} ({}): {addresses}; id {}", g.name, code(&g.kind), g.id)
    });
    Ok(())
}

fn more_note(more: bool, shown: usize) -> String {
    if more {
        format!("\n… more rows after these {shown} (raise --limit, or leave it out for all)")
    } else {
        String::new()
    }
}

/// The groups a user (by id, address or name) belongs to.
pub async fn groups(
    ctx: &Ctx<'_>,
    account: &str,
    connector: &str,
    user: &str,
    args: &ListArgs,
) -> Outcome {
    let l = Lookup {
        account,
        connector,
        object: user,
        transitive: args.transitive,
    };
    let listing = ctx.api.user_groups(&l, args.limit).await?;
    show(ctx.json, &listing, |l| {
        let rows = l.rows.iter().map(|g| {
            [
                cell(&g.name),
                cell(&g.mail),
                cell(&g.kind),
                g.depth.to_string(),
                cell(&g.via),
                g.id.clone(),
            ]
        });
        let who = l.of.user.primary_email.as_deref().unwrap_or(&l.of.user.id);
        format!(
            "{who}: {} groups\n{}{}",
            l.rows.len(),
            table(["GROUP", "ADDRESS", "KIND", "DEPTH", "VIA", "ID"], rows),
            more_note(l.more, l.rows.len())
        )
    });
    Ok(())
}

/// The members of a group (by id, address or name).
pub async fn members(
    ctx: &Ctx<'_>,
    account: &str,
    connector: &str,
    group: &str,
    args: &ListArgs,
) -> Outcome {
    let l = Lookup {
        account,
        connector,
        object: group,
        transitive: args.transitive,
    };
    let listing = ctx.api.group_members(&l, args.limit).await?;
    show(ctx.json, &listing, |l| {
        let rows = l.rows.iter().map(|m| {
            [
                cell(&m.name),
                cell(&m.address),
                m.kind.clone(),
                m.depth.to_string(),
                cell(&m.via),
                m.id.clone(),
            ]
        });
        format!(
            "{}: {} members\n{}{}",
            l.of.group.name,
            l.rows.len(),
            table(["MEMBER", "ADDRESS", "KIND", "DEPTH", "VIA", "ID"], rows),
            more_note(l.more, l.rows.len())
        )
    });
    Ok(())
}

/// A connector's synced directory as JSON.
pub async fn export(ctx: &Ctx<'_>, account: &str, connector: &str) -> Outcome {
    let scope = Scope::new(
        AccountId::new(account).map_err(|e| Failure::refused(e.to_string()))?,
        ConnectorId::new(connector).map_err(|e| Failure::refused(e.to_string()))?,
    );
    // Named first: a connector that does not exist is refused, not empty.
    ctx.api.connector(account, connector).await?;
    let store = &ctx.local.app.store;
    let users = all_pages(|p| store.list_users(&scope, p))
        .await
        .map_err(Failure::internal)?;
    let groups = all_pages(|p| store.list_groups(&scope, p))
        .await
        .map_err(Failure::internal)?;
    let mut memberships = Vec::new();
    for g in &groups {
        let page = all_pages(|p| store.group_members(&scope, &g.id, p)).await;
        memberships.extend(page.map_err(Failure::internal)?);
    }
    let all = json!({"users": users, "groups": groups, "memberships": memberships});
    crate::out::line(&serde_json::to_string_pretty(&all).unwrap_or_default());
    Ok(())
}
