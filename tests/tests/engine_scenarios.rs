//! The sync engine's rules, shown on both stores with an in-memory source.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::Duration;
use common::Fixture;
use common::memory::{Directory, Fault, MemorySource, Touched, group, sid, user};
use dirsync_shared::domain::*;
use dirsync_shared::engine::{Action, EngineSettings, RunOutcome, RunRequest, SyncEngine};
use dirsync_shared::source::{
    Change, ConnectionReport, DirectorySource, Member, Next, ReadFrom, Removal, SourceError,
    SourcePage, Stream,
};
use dirsync_shared::store::{PageRequest, Scope};
use serde_json::json;

on_both_stores!(
    first_sync_then_unchanged_full_resync_writes_nothing,
    acknowledge_disabled_on_and_off,
    domain_filter_scopes_users_and_their_memberships,
    a_first_sync_with_many_out_of_scope_members_does_not_stage,
    address_conflicts_between_connectors_are_reported_not_overwritten,
    an_alias_two_users_share_is_reported_and_owned_by_rule,
    deletions_by_full_sweep_and_by_delta,
    a_delta_rounds_guard_weighs_its_removals_against_the_stored_totals,
    guard_stages_when_the_source_returns_almost_nothing_and_approval_applies_exactly_the_list,
    rejecting_a_staged_run_keeps_everything,
    a_staged_run_is_superseded_by_a_later_one_and_cannot_be_approved,
    an_empty_source_never_removes_anything,
    interrupted_after_every_page_resumes_to_the_same_state,
    deadline_continuations_reach_the_same_state,
    a_page_slower_than_an_invocation_still_moves_the_run_on,
    a_first_sync_writes_memberships_without_reading_them_and_says_so_across_invocations,
    a_first_sync_reads_back_what_it_wrote_only_when_it_cannot_vouch_for_it,
    memberships_of_users_skipped_earlier_in_the_run_are_not_written,
    a_first_sync_resumed_after_a_crash_cannot_vouch_for_it,
    a_replayed_page_changes_nothing,
    one_run_per_connector_and_dead_runs_are_taken_over,
    dry_run_lists_every_action_and_writes_nothing,
    expired_delta_cursor_leads_to_a_full_resync,
    catch_up_full_sync_reconciles_missed_changes,
    run_records_keep_the_last_n,
    membership_removals_are_held_weighed_per_group_and_listed,
    a_run_staged_for_700_user_removals_changes_no_row_and_a_newer_run_ends_its_review,
    each_connector_sets_its_own_limits,
    the_account_holds_removals_while_another_connector_is_paused_or_failed,
    an_approval_skips_what_changed_since_and_a_staged_run_expires,
    a_run_keeps_its_lease_while_it_works_and_stops_once_it_has_lost_it,
    a_later_page_has_the_last_word_on_a_held_change,
    a_delta_rounds_membership_removals_are_weighed_against_all_stored,
);

// ---- helpers ----------------------------------------------------------------

fn connector(f: &Fixture, id: &str, extra: serde_json::Value) -> Connector {
    let mut spec = json!({
        "id": id, "kind": "entra-legacy", "tenant": "contoso.onmicrosoft.com",
        "client_id": "6731de76-14a6-49ae-97bc-6eba6914391e", "client_secret_ref": "s",
        "acknowledge_disabled": true,
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    let spec: ConnectorSpec = serde_json::from_value(spec).unwrap();
    spec.validate(
        AccountId::new("acme").unwrap(),
        dirsync_shared::clock::Clock::now(&*f.clock),
    )
    .unwrap()
}

fn engine(f: &Fixture) -> SyncEngine {
    SyncEngine::new(f.store.clone(), EngineSettings::default())
}

fn scope(c: &Connector) -> Scope {
    Scope::new(c.account.clone(), c.id.clone())
}

fn manual() -> RunRequest {
    RunRequest::new(Trigger::Manual {
        requested_by: Some("test".into()),
    })
}

fn full() -> RunRequest {
    RunRequest {
        full: true,
        ..manual()
    }
}

async fn run(f: &Fixture, c: &Connector, src: &dyn DirectorySource, req: RunRequest) -> SyncRun {
    match engine(f).run(c, src, req).await.unwrap() {
        RunOutcome::Finished(r) => r,
        other => panic!("expected a finished run, got {other:?}"),
    }
}

#[derive(PartialEq)]
struct State {
    users: BTreeMap<String, User>,
    groups: BTreeSet<String>,
    members: BTreeSet<(String, String)>,
}

async fn state(f: &Fixture, c: &Connector) -> State {
    let common::rows::Stored {
        users,
        groups,
        members,
    } = common::rows::stored(f, c).await;
    State {
        users: users.into_iter().map(|u| (u.id.to_string(), u)).collect(),
        groups: groups.into_iter().map(|g| g.id.to_string()).collect(),
        members,
    }
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Large states are compared in tests: show a digest, not every user.
        let disabled = self.users.values().filter(|u| !u.enabled).count();
        write!(
            f,
            "State {{ {} users ({} disabled, first {:?}, last {:?}), {} groups, {} memberships, hash {:016x} }}",
            self.users.len(),
            disabled,
            self.users.keys().next(),
            self.users.keys().last(),
            self.groups.len(),
            self.members.len(),
            dirsync_shared::engine::progress::fingerprint(&[&format!(
                "{:?}{:?}{:?}",
                self.users, self.groups, self.members
            )])
        )
    }
}

/// What the store should hold for a directory (no filter, acknowledge on).
fn expected(d: &Directory) -> State {
    State {
        users: d.users.clone(),
        groups: d.groups.keys().cloned().collect(),
        members: d
            .members
            .iter()
            .flat_map(|(g, ms)| ms.keys().map(move |m| (g.clone(), m.clone())))
            .filter(|(_, m)| !m.starts_with('u') || d.users.contains_key(m))
            .collect(),
    }
}

// ---- scenarios --------------------------------------------------------------

async fn first_sync_then_unchanged_full_resync_writes_nothing(f: Fixture) {
    let src = MemorySource::new(Directory::generate(120, 6, "contoso.com"), 25);
    let c = connector(&f, "main", json!({}));
    let r = run(&f, &c, &src, manual()).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    assert_eq!(r.mode, SyncMode::Full, "no cursor yet: a full read");
    assert_eq!((r.counts.created, r.counts.members_added), (126, 241));
    assert_eq!(state(&f, &c).await, expected(&src.directory()));
    assert!(
        f.store
            .find_user_by_address(&c.account, &"alias7@contoso.com".parse().unwrap())
            .await
            .unwrap()
            .is_some()
    );

    let before = f.writes.directory_writes();
    let r = run(&f, &c, &src, full()).await;
    assert_eq!(r.status, RunStatus::Succeeded);
    assert_eq!(
        (r.counts.created, r.counts.updated, r.counts.unchanged),
        (0, 0, 126)
    );
    assert_eq!(
        f.writes.directory_writes(),
        before,
        "an unchanged full sync writes no directory item"
    );

    let r = run(&f, &c, &src, manual()).await;
    assert_eq!(r.mode, SyncMode::Delta, "the cursor is kept: a delta read");
    assert_eq!(f.writes.directory_writes(), before);
}

async fn acknowledge_disabled_on_and_off(f: Fixture) {
    let mut d = Directory::generate(5, 0, "contoso.com");
    d.users.get_mut("u00001").unwrap().enabled = false;
    let src = MemorySource::new(d, 10);
    let on = connector(&f, "on", json!({"acknowledge_disabled": true}));
    let off = connector(&f, "off", json!({"acknowledge_disabled": false}));
    run(&f, &on, &src, manual()).await;
    // Different connectors would conflict on addresses; use another account's view.
    let mut off = off;
    off.account = AccountId::new("other").unwrap();
    run(&f, &off, &src, manual()).await;
    assert!(
        !state(&f, &on).await.users["u00001"].enabled,
        "on: disabled at the source → disabled here"
    );
    assert!(
        state(&f, &off).await.users["u00001"].enabled,
        "off: stays enabled"
    );

    // Disabling later, with acknowledge on, is applied at the end of the run.
    src.mutate(|d, touch| {
        d.users.get_mut("u00002").unwrap().enabled = false;
        touch(Touched::User("u00002".into()));
    });
    let r = run(&f, &on, &src, manual()).await;
    assert_eq!(r.counts.disabled, 1);
    assert!(!state(&f, &on).await.users["u00002"].enabled);
    src.mutate(|d, touch| {
        d.users.get_mut("u00002").unwrap().enabled = true;
        touch(Touched::User("u00002".into()));
    });
    assert_eq!(run(&f, &on, &src, manual()).await.counts.enabled, 1);
}

async fn domain_filter_scopes_users_and_their_memberships(f: Fixture) {
    let mut d = Directory::generate(6, 2, "contoso.com");
    let mut outsider = user(99, "fabrikam.com");
    outsider.aliases.insert("x99@contoso.com".parse().unwrap());
    d.users.insert("u00099".into(), outsider);
    d.members
        .get_mut("g0000")
        .unwrap()
        .insert("u00099".into(), MemberKind::User);
    d.users
        .get_mut("u00001")
        .unwrap()
        .aliases
        .insert("one@fabrikam.com".parse().unwrap());
    let src = MemorySource::new(d, 4);
    let c = connector(&f, "main", json!({"email_domains": "contoso.com"}));
    let r = run(&f, &c, &src, manual()).await;
    assert_eq!(r.counts.skipped, 1);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.kind == WarningKind::OutOfScope && w.object == "u00099")
    );
    let st = state(&f, &c).await;
    assert!(
        !st.users.contains_key("u00099"),
        "out of scope: not written"
    );
    assert!(
        !st.members.iter().any(|(_, m)| m == "u00099"),
        "nor its memberships"
    );
    assert!(
        !st.users["u00001"]
            .aliases
            .contains(&"one@fabrikam.com".parse().unwrap()),
        "aliases outside the filter dropped"
    );
    assert!(
        f.store
            .find_user_by_address(&c.account, &"x99@contoso.com".parse().unwrap())
            .await
            .unwrap()
            .is_none()
    );
}

/// Found by the benchmark: memberships of users the policy skips were
/// added, then swept at the end of the run, and those clean-up removals
/// tripped the deletion guard on a first sync (nothing stored before, so
/// nothing to protect).
async fn a_first_sync_with_many_out_of_scope_members_does_not_stage(f: Fixture) {
    let mut d = Directory::generate(10, 2, "contoso.com");
    add_outsiders(&mut d, "g0000", 100..700);
    let src = MemorySource::new(d, 50);
    let c = connector(&f, "main", json!({"email_domains": "contoso.com"}));
    let r = run(&f, &c, &src, manual()).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    assert_eq!(r.counts.skipped, 600);
    let st = state(&f, &c).await;
    assert_eq!(st.users.len(), 10);
    assert!(
        !st.members
            .iter()
            .any(|(_, m)| m.starts_with("u001") || m.starts_with("u006")),
        "no memberships of skipped users"
    );
    // And a full re-run finds nothing to stage either.
    let r = run(&f, &c, &src, full()).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
}

async fn address_conflicts_between_connectors_are_reported_not_overwritten(f: Fixture) {
    let a = MemorySource::new(Directory::generate(3, 0, "contoso.com"), 10);
    let mut db = Directory::default();
    let mut rival = user(1, "contoso.com");
    rival.id = sid("ldap-1");
    db.users.insert("ldap-1".into(), rival);
    let b = MemorySource::new(db, 10);
    let ca = connector(&f, "entra", json!({}));
    let cb = connector(&f, "ldap", json!({}));
    assert_eq!(
        run(&f, &ca, &a, manual()).await.status,
        RunStatus::Succeeded
    );
    let r = run(&f, &cb, &b, manual()).await;
    assert_eq!(r.status, RunStatus::Partial, "{:?}", r.message);
    assert!(r.message.as_deref().unwrap().contains("another connector"));
    let w = r
        .warnings
        .iter()
        .find(|w| w.kind == WarningKind::AddressConflict)
        .unwrap();
    assert!(w.detail.contains("entra"), "{}", w.detail);
    let (owner, _) = f
        .store
        .find_user_by_address(&ca.account, &"user1@contoso.com".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(owner.as_str(), "entra");
}

async fn an_alias_two_users_share_is_reported_and_owned_by_rule(f: Fixture) {
    // A directory's own data is less tidy than its rules: one user lists
    // another's primary address as an alias, and two users list the same
    // alias.
    let mut d = Directory::generate(6, 0, "contoso.com");
    d.users.get_mut("u00001").unwrap().aliases.extend([
        "user2@contoso.com".parse().unwrap(),
        "helpdesk@contoso.com".parse().unwrap(),
    ]);
    d.users
        .get_mut("u00004")
        .unwrap()
        .aliases
        .insert("helpdesk@contoso.com".parse().unwrap());
    let src = MemorySource::new(d, 2);
    let c = connector(&f, "main", json!({}));
    let r = run(&f, &c, &src, manual()).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    assert_eq!(
        state(&f, &c).await,
        expected(&src.directory()),
        "every user written whole"
    );
    let shared: Vec<&ObjectWarning> = r
        .warnings
        .iter()
        .filter(|w| w.kind == WarningKind::AddressShared)
        .collect();
    assert_eq!(shared.len(), 2, "{shared:?}");
    for w in &shared {
        assert!(w.detail.contains("u00001"), "names both: {}", w.detail);
    }
    let owner = |a: &str| {
        let store = f.store.clone();
        let account = c.account.clone();
        let a: EmailAddress = a.parse().unwrap();
        async move {
            let (_, u) = store
                .find_user_by_address(&account, &a)
                .await
                .unwrap()
                .unwrap();
            u.id.to_string()
        }
    };
    assert_eq!(
        owner("user2@contoso.com").await,
        "u00002",
        "a primary address before an alias"
    );
    assert_eq!(
        owner("helpdesk@contoso.com").await,
        "u00001",
        "then the user that held it first"
    );

    // Read again unchanged: nothing is written and the look-ups stay.
    let before = f.writes.directory_writes();
    let again = run(&f, &c, &src, full()).await;
    assert_eq!(again.status, RunStatus::Succeeded);
    assert_eq!(f.writes.directory_writes(), before, "nothing rewritten");
    assert_eq!(owner("helpdesk@contoso.com").await, "u00001");

    // The owner drops the alias: the other user gets it, without a run
    // that touches that user.
    src.mutate(|d, touch| {
        d.users
            .get_mut("u00001")
            .unwrap()
            .aliases
            .remove(&"helpdesk@contoso.com".parse().unwrap());
        touch(Touched::User("u00001".into()));
    });
    run(&f, &c, &src, manual()).await;
    assert_eq!(owner("helpdesk@contoso.com").await, "u00004");
}

async fn deletions_by_full_sweep_and_by_delta(f: Fixture) {
    let src = MemorySource::new(Directory::generate(40, 4, "contoso.com"), 10);
    let c = connector(&f, "main", json!({}));
    run(&f, &c, &src, manual()).await;
    // Removed at the source between runs, but the delta log does not say so:
    // only a full read can notice.
    src.mutate(|d, _| {
        d.users.remove("u00003");
    });
    let r = run(&f, &c, &src, full()).await;
    assert_eq!(r.counts.removed, 1);
    let st = state(&f, &c).await;
    assert!(!st.users.contains_key("u00003"));
    assert!(
        !st.members.iter().any(|(_, m)| m == "u00003"),
        "its memberships went with it"
    );
    assert_eq!(st, expected(&src.directory()));
    // A delta removal.
    let before = state(&f, &c).await;
    src.mutate(|d, touch| {
        d.users.remove("u00004");
        touch(Touched::User("u00004".into()));
        d.members.get_mut("g0001").unwrap().remove("u00005");
        touch(Touched::Member("g0001".into(), "u00005".into()));
    });
    let r = run(&f, &c, &src, manual()).await;
    // One membership removed explicitly, and the removed user's two with
    // it: the count is the rows that went.
    let after = state(&f, &c).await;
    assert_eq!(
        r.counts.members_removed as usize,
        before.members.len() - after.members.len()
    );
    assert_eq!(
        (r.mode, r.counts.removed, r.counts.members_removed),
        (SyncMode::Delta, 1, 3)
    );
    assert_eq!(state(&f, &c).await, expected(&src.directory()));
}

/// Whether the run's message contains `text`.
fn says(r: &SyncRun, text: &str) -> bool {
    r.message.as_deref().is_some_and(|m| m.contains(text))
}

/// Users deleted at the source, with their memberships, as a delta sees it.
fn delete_users(src: &MemorySource, range: std::ops::Range<usize>) {
    src.mutate(|d, touch| {
        for i in range {
            let id = format!("u{i:05}");
            d.users.remove(&id);
            for members in d.members.values_mut() {
                members.remove(&id);
            }
            touch(Touched::User(id));
        }
    })
}

async fn a_delta_rounds_guard_weighs_its_removals_against_the_stored_totals(f: Fixture) {
    // 150 users and 6 groups; the default guard stages more than 10% once
    // at least 10 are affected. A delta round counts what is stored rather
    // than reading it out: the percentage must still come out right.
    let src = MemorySource::new(Directory::generate(150, 6, "contoso.com"), 40);
    let c = connector(&f, "main", json!({}));
    run(&f, &c, &src, manual()).await;
    let delete = |range| delete_users(&src, range);
    // 12 of 156 (7.7%): applied.
    delete(0..12);
    let r = run(&f, &c, &src, manual()).await;
    assert_eq!(
        (r.mode, r.status, r.counts.removed),
        (SyncMode::Delta, RunStatus::Succeeded, 12),
        "{:?}",
        r.message
    );
    assert_eq!(state(&f, &c).await, expected(&src.directory()));
    // 16 of the 144 left (11.1%): staged, nothing removed.
    delete(12..28);
    let before = state(&f, &c).await;
    let r = run(&f, &c, &src, manual()).await;
    assert_eq!((r.status, r.counts.removed), (RunStatus::Staged, 0));
    assert!(says(&r, "of 138 stored users"), "{:?}", r.message);
    assert_eq!(state(&f, &c).await, before);

    // Over the absolute cap the total cannot matter: staged without it.
    let capped = engine(&f);
    let c2 = connector(&f, "capped", json!({"max_user_removals": 10}));
    let src2 = MemorySource::new(Directory::generate(150, 6, "fabrikam.com"), 40);
    capped.run(&c2, &src2, manual()).await.unwrap();
    delete_users(&src2, 0..12);
    let RunOutcome::Finished(r) = capped.run(&c2, &src2, manual()).await.unwrap() else {
        panic!("a finished run")
    };
    assert_eq!((r.status, r.counts.removed), (RunStatus::Staged, 0));
    assert!(says(&r, "limit of 10"), "{:?}", r.message);
}

async fn guard_stages_when_the_source_returns_almost_nothing_and_approval_applies_exactly_the_list(
    f: Fixture,
) {
    let src = MemorySource::new(Directory::generate(60, 3, "contoso.com"), 20);
    let c = connector(&f, "main", json!({}));
    run(&f, &c, &src, manual()).await;
    let before = state(&f, &c).await;
    // The source suddenly returns two users.
    src.mutate(|d, _| d.users.retain(|id, _| id == "u00000" || id == "u00001"));
    let r = run(&f, &c, &src, full()).await;
    assert_eq!(r.status, RunStatus::Staged, "{:?}", r.message);
    assert!(
        r.message.as_deref().unwrap().contains("approve or reject"),
        "{:?}",
        r.message
    );
    assert_eq!(
        state(&f, &c).await.users,
        before.users,
        "nothing removed while staged"
    );
    let e = engine(&f);
    let staged = e.staged_actions(&scope(&c), &r.id).await.unwrap();
    let users: Vec<_> = staged.iter().filter(|p| p.object_type == "user").collect();
    assert_eq!(users.len(), 58);
    assert!(
        users
            .iter()
            .all(|p| p.action == Action::Remove && p.reason == "no longer found in the directory")
    );
    assert!(users.iter().any(|p| p.label == "user42@contoso.com"));

    // A staged user that changes before the review is left alone by the approval.
    let mut changed = f
        .store
        .get_user(&scope(&c), &sid("u00042"))
        .await
        .unwrap()
        .unwrap();
    changed.display_name = Some("Came back".into());
    f.store.upsert_users(&scope(&c), &[changed]).await.unwrap();
    let approved = e
        .approve(&scope(&c), &r.id, Some("admin@contoso.com".into()))
        .await
        .unwrap();
    assert_eq!(approved.status, RunStatus::Approved);
    assert_eq!(
        approved.review.as_ref().unwrap().applied,
        staged.len() as u64 - 1
    );
    let after = state(&f, &c).await;
    assert_eq!(
        after.users.keys().collect::<Vec<_>>(),
        ["u00000", "u00001", "u00042"]
    );
    assert!(
        approved.message.as_deref().unwrap().contains("1 skipped"),
        "{:?}",
        approved.message
    );
    assert!(
        e.reject(&scope(&c), &r.id, None).await.is_err(),
        "a reviewed run takes no second decision"
    );
    assert!(
        e.approve(&scope(&c), &r.id, None).await.is_err(),
        "a list is applied once"
    );
}

async fn rejecting_a_staged_run_keeps_everything(f: Fixture) {
    let src = MemorySource::new(Directory::generate(30, 2, "contoso.com"), 50);
    let c = connector(&f, "main", json!({}));
    run(&f, &c, &src, manual()).await;
    let before = state(&f, &c).await;
    src.mutate(|d, _| d.users.clear());
    src.mutate(|d, _| {
        d.users.insert("u00000".into(), user(0, "contoso.com"));
    });
    let r = run(&f, &c, &src, full()).await;
    assert_eq!(r.status, RunStatus::Staged);
    let rejected = engine(&f).reject(&scope(&c), &r.id, None).await.unwrap();
    assert_eq!(rejected.status, RunStatus::Rejected, "never 'succeeded'");
    assert!(!rejected.review.unwrap().approved);
    assert_eq!(state(&f, &c).await.users, before.users);
    assert!(
        engine(&f)
            .staged_actions(&scope(&c), &r.id)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_staged_run_is_superseded_by_a_later_one_and_cannot_be_approved(f: Fixture) {
    let src = MemorySource::new(Directory::generate(60, 3, "contoso.com"), 20);
    let c = connector(&f, "main", json!({}));
    run(&f, &c, &src, manual()).await;
    let whole = src.directory();
    // A truncated read stages the removal of almost everyone…
    src.mutate(|d, _| d.users.retain(|id, _| id == "u00000" || id == "u00001"));
    let staged = run(&f, &c, &src, full()).await;
    assert_eq!(staged.status, RunStatus::Staged, "{:?}", staged.message);
    // …then the source is whole again and a later run succeeds.
    src.mutate(|d, _| *d = whole.clone());
    let later = run(&f, &c, &src, full()).await;
    assert_eq!(later.status, RunStatus::Succeeded, "{:?}", later.message);
    let before = state(&f, &c).await;
    let e = engine(&f);
    let old = f
        .store
        .get_run(&scope(&c), &staged.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old.status, RunStatus::Superseded);
    assert!(
        old.message.as_deref().unwrap().contains(later.id.as_str()),
        "{:?}",
        old.message
    );
    let err = e
        .approve(&scope(&c), &staged.id, Some("admin@contoso.com".into()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not waiting for review"), "{err}");
    assert!(
        state(&f, &c).await == before,
        "approving it changed nothing"
    );
    assert!(
        e.staged_actions(&scope(&c), &staged.id)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn an_empty_source_never_removes_anything(f: Fixture) {
    let src = MemorySource::new(Directory::generate(8, 1, "contoso.com"), 5);
    // Even with a guard that would let everything through.
    let all = u64::MAX;
    let c = connector(
        &f,
        "main",
        json!({"max_user_removals": all, "max_user_removals_percent": 100,
               "max_group_removals": all, "max_group_removals_percent": 100,
               "max_membership_removals": all, "max_membership_removals_percent": 100}),
    );
    run(&f, &c, &src, manual()).await;
    let before = state(&f, &c).await;
    src.mutate(|d, _| *d = Directory::default());
    let r = match engine(&f).run(&c, &src, full()).await.unwrap() {
        RunOutcome::Finished(r) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(r.status, RunStatus::Failed);
    assert!(
        r.message.as_deref().unwrap().contains("returned no users"),
        "{:?}",
        r.message
    );
    assert_eq!(state(&f, &c).await, before);

    // A failing read removes nothing either, and says what happens next.
    src.mutate(|d, _| *d = Directory::generate(3, 1, "contoso.com"));
    src.fault_at(1, Fault::Unavailable);
    let r = run(&f, &c, &src, full()).await;
    assert_eq!(r.status, RunStatus::Failed);
    assert!(
        r.message
            .as_deref()
            .unwrap()
            .contains("Nothing was removed")
    );
    assert_eq!(state(&f, &c).await, before);
}

async fn interrupted_after_every_page_resumes_to_the_same_state(f: Fixture) {
    let dir = Directory::generate(150, 5, "contoso.com");
    let baseline_src = MemorySource::new(dir.clone(), 15);
    let base = connector(&f, "baseline", json!({}));
    let mut base = base;
    base.account = AccountId::new("baseline").unwrap();
    run(&f, &base, &baseline_src, manual()).await;
    let want = state(&f, &base).await;
    let pages = baseline_src
        .pages_read
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(pages >= 10, "a sync of several pages ({pages})");

    for k in 1..=pages {
        let mut c = connector(&f, &format!("crash{k}"), json!({}));
        c.account = AccountId::new(format!("crash{k}")).unwrap();
        let src = MemorySource::new(dir.clone(), 15);
        let e = engine(&f);
        crash_at(&e, &c, &src, k).await;
        src.clear_fault();
        // Until its lease expires, nobody else may run the connector.
        assert!(matches!(
            e.run(&c, &src, manual()).await.unwrap(),
            RunOutcome::AlreadyRunning { .. }
        ));
        f.clock.advance(Duration::minutes(11));
        let r = run(&f, &c, &src, manual()).await;
        assert_eq!(r.status, RunStatus::Succeeded, "page {k}: {:?}", r.message);
        assert_eq!(state(&f, &c).await, want, "interrupted at page {k}");
        // And the delta cursor was kept: the next run reads nothing new.
        let again = run(&f, &c, &src, manual()).await;
        assert_eq!((again.mode, again.counts.created), (SyncMode::Delta, 0));
    }
}

/// The process dies while reading page `k`: the run's future is dropped
/// once the read hangs there (not after a fixed time, which a slow store
/// may not have begun the run by).
async fn crash_at(e: &SyncEngine, c: &Connector, src: &MemorySource, k: u64) {
    src.fault_at(k, Fault::Hang);
    let reached = async {
        while src.pages_read.load(std::sync::atomic::Ordering::SeqCst) < k {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // Let the streams not waiting on page k reach their own pause.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    tokio::select! {
        r = e.run(c, src, manual()) => panic!("page {k}: the run hangs at the fault: {r:?}"),
        () = reached => {}
    }
}

async fn deadline_continuations_reach_the_same_state(f: Fixture) {
    let dir = Directory::generate(80, 4, "contoso.com");
    let src = MemorySource::new(dir.clone(), 10);
    *src.page_delay.lock().unwrap() = std::time::Duration::from_millis(30);
    let c = connector(&f, "main", json!({}));
    let (run, invocations) = in_short_invocations(&f, &c, &src, manual(), async || {}).await;
    assert!(
        invocations >= 3,
        "continued across invocations ({invocations})"
    );
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(
        run.counts.created, 84,
        "each object created once across invocations"
    );
    assert_eq!(state(&f, &c).await, expected(&dir));
}

async fn a_page_slower_than_an_invocation_still_moves_the_run_on(f: Fixture) {
    // Each page takes 150 ms and an invocation 100 ms: the first read of an
    // invocation is waited for and applied, so every invocation checkpoints
    // a page per stream and the run ends.
    let dir = Directory::generate(20, 2, "contoso.com");
    let src = MemorySource::new(dir.clone(), 10);
    *src.page_delay.lock().unwrap() = std::time::Duration::from_millis(150);
    let c = connector(&f, "main", json!({}));
    let (run, invocations) = in_short_invocations(&f, &c, &src, manual(), async || {}).await;
    assert!(invocations >= 2, "continued ({invocations} invocations)");
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.message);
    assert_eq!(state(&f, &c).await, expected(&dir));
}

/// Invocations of at most 100 ms until the run finishes (the first one
/// with `first`), with `between` called after each paused one.
async fn in_short_invocations(
    f: &Fixture,
    c: &Connector,
    src: &MemorySource,
    first: RunRequest,
    mut between: impl AsyncFnMut(),
) -> (SyncRun, usize) {
    let settings = EngineSettings {
        deadline_margin: std::time::Duration::ZERO,
        ..Default::default()
    };
    let e = SyncEngine::new(f.store.clone(), settings);
    let mut request = first;
    for invocations in 1..50 {
        request.deadline =
            Some(tokio::time::Instant::now() + std::time::Duration::from_millis(100));
        match e.run(c, src, request.clone()).await.unwrap() {
            RunOutcome::Continue { .. } => request = RunRequest::new(Trigger::Continuation),
            RunOutcome::Finished(r) => return (r, invocations),
            other => panic!("{other:?}"),
        }
        between().await;
    }
    panic!("the run makes no progress");
}

async fn a_first_sync_writes_memberships_without_reading_them_and_says_so_across_invocations(
    f: Fixture,
) {
    let dir = Directory::generate(80, 4, "contoso.com");
    let src = MemorySource::new(dir.clone(), 10);
    *src.page_delay.lock().unwrap() = std::time::Duration::from_millis(30);
    let c = connector(&f, "main", json!({}));
    let began_empty = async || {
        let run = f.store.get_progress(&scope(&c), "run").await.unwrap();
        let run = run.expect("a paused run keeps its checkpoint");
        // Paused cleanly, the run keeps its word on what it recorded.
        let vouches = run["member_users_recorded"].as_bool();
        run["began_empty"].as_bool().filter(|b| vouches == Some(*b))
    };

    // The connector holds nothing: the run says so, in every invocation.
    let mut flags = Vec::new();
    let (r, invocations) = in_short_invocations(&f, &c, &src, manual(), async || {
        flags.push(began_empty().await)
    })
    .await;
    assert!(invocations >= 3, "continued ({invocations} invocations)");
    assert!(flags.iter().all(|b| *b == Some(true)), "{flags:?}");
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    let want = expected(&dir);
    assert_eq!(state(&f, &c).await, want);
    assert_eq!(
        r.counts.members_added,
        want.members.len() as u64,
        "each membership counted once across invocations"
    );

    // Now the connector holds a directory: a full sync reads before it
    // writes, and so writes nothing.
    let before = f.writes.directory_writes();
    let mut flags = Vec::new();
    let (r, _) = in_short_invocations(&f, &c, &src, full(), async || {
        flags.push(began_empty().await)
    })
    .await;
    assert!(flags.iter().all(|b| *b == Some(false)), "{flags:?}");
    assert_eq!(
        (r.status, r.counts.members_added),
        (RunStatus::Succeeded, 0)
    );
    assert_eq!(f.writes.directory_writes(), before);
    assert_eq!(state(&f, &c).await, want);
}

/// Users of fabrikam.com (which a filter on another domain skips), members
/// of `group`.
fn add_outsiders(d: &mut Directory, group: &str, ids: std::ops::Range<usize>) {
    for i in ids {
        let u = user(i, "fabrikam.com");
        d.members
            .get_mut(group)
            .unwrap()
            .insert(u.id.to_string(), MemberKind::User);
        d.users.insert(u.id.to_string(), u);
    }
}

/// 60 users of `domain` in 4 groups, and 10 outsiders in group 1.
fn with_outsiders(domain: &str) -> Directory {
    let mut d = Directory::generate(60, 4, domain);
    add_outsiders(&mut d, "g0001", 100..110);
    d
}

/// The users stream tells the groups stream whom it skipped as it goes: a
/// group page applied after them holds their memberships back instead of
/// writing them and removing them again at the end.
async fn memberships_of_users_skipped_earlier_in_the_run_are_not_written(f: Fixture) {
    let c = connector(&f, "main", json!({ "email_domains": "contoso.com" }));
    // One page per stream, the groups' applied well after the users' (a
    // page of 70 users is stored in a few milliseconds).
    let source = MemorySource::new(with_outsiders("contoso.com"), 500);
    *source.groups_delay.lock().unwrap() = std::time::Duration::from_secs(1);
    let r = run(&f, &c, &source, manual()).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    assert_eq!(r.counts.skipped, 10);
    assert_eq!(r.counts.members_removed, 0, "nothing written to remove");
    let want = expected(&Directory::generate(60, 4, "contoso.com"));
    assert_eq!(state(&f, &c).await, want);
    // Only the kept memberships were written (a first sync counts what it
    // writes).
    assert_eq!(r.counts.members_added, want.members.len() as u64);
}

/// A first sync stored only what it saw, so it ends without reading back
/// what it wrote: the memberships of the users it skipped are found in the
/// index. Unless a membership may point at a user it did not store, one the
/// users stream never listed or one lost to another connector's address:
/// then it reads everything back, and those memberships go too.
async fn a_first_sync_reads_back_what_it_wrote_only_when_it_cannot_vouch_for_it(f: Fixture) {
    let reads = || f.writes.counts().now().read;
    let filtered = |domain: &str| json!({ "email_domains": domain });

    // Skipped members only: no read-back.
    let a = connector(&f, "a", filtered("contoso.com"));
    let before = reads();
    let r = run(
        &f,
        &a,
        &MemorySource::new(with_outsiders("contoso.com"), 20),
        manual(),
    )
    .await;
    let vouched = reads() - before;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    assert_eq!(r.counts.skipped, 10);
    assert_eq!(
        state(&f, &a).await,
        expected(&Directory::generate(60, 4, "contoso.com"))
    );

    // The same, plus a member the users stream never lists: read back.
    let mut d = with_outsiders("example.org");
    d.members
        .get_mut("g0002")
        .unwrap()
        .insert("u00999".into(), MemberKind::User);
    let b = connector(&f, "b", filtered("example.org"));
    let before = reads();
    let r = run(&f, &b, &MemorySource::new(d, 20), manual()).await;
    let read_back = reads() - before;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    let want = expected(&Directory::generate(60, 4, "example.org"));
    assert_eq!(state(&f, &b).await, want);
    assert!(
        read_back >= vouched + want.members.len() as u64,
        "the second run read back its memberships ({read_back} items read, the first {vouched})"
    );

    // A member whose address connector a owns is not stored, and neither
    // is its membership.
    let mut d = Directory::default();
    let mut rival = user(1, "contoso.com");
    rival.id = sid("ldap-1");
    let own = user(200, "contoso.com");
    d.groups.insert("g0000".into(), group(0));
    for u in [rival, own] {
        d.members
            .entry("g0000".into())
            .or_default()
            .insert(u.id.to_string(), MemberKind::User);
        d.users.insert(u.id.to_string(), u);
    }
    let c = connector(&f, "c", json!({}));
    let r = run(&f, &c, &MemorySource::new(d, 20), manual()).await;
    assert_eq!(r.status, RunStatus::Partial, "{:?}", r.message);
    let st = state(&f, &c).await;
    assert_eq!(st.users.keys().collect::<Vec<_>>(), ["u00200"]);
    assert_eq!(
        st.members,
        BTreeSet::from([("g0000".to_owned(), "u00200".to_owned())])
    );
}

/// An invocation that dies may have written a page it did not record: the
/// run it leaves can no longer vouch for what it stored, and its end reads
/// back. A clean pause keeps the run's word.
async fn a_first_sync_resumed_after_a_crash_cannot_vouch_for_it(f: Fixture) {
    let dir = Directory::generate(80, 4, "contoso.com");
    let src = MemorySource::new(dir.clone(), 10);
    let c = connector(&f, "main", json!({}));
    let vouches = async || {
        let run = f.store.get_progress(&scope(&c), "run").await.unwrap();
        run.expect("an unfinished run keeps its checkpoint")["member_users_recorded"].as_bool()
    };
    crash_at(&engine(&f), &c, &src, 4).await;
    assert_eq!(vouches().await, Some(true), "as the run began");
    src.clear_fault();
    f.clock.advance(Duration::minutes(11));

    // Taken over after the crash, then paused and continued cleanly: the
    // run does not get its word back.
    *src.page_delay.lock().unwrap() = std::time::Duration::from_millis(30);
    let mut flags = Vec::new();
    let (r, invocations) =
        in_short_invocations(&f, &c, &src, manual(), async || flags.push(vouches().await)).await;
    assert!(invocations >= 2, "continued ({invocations} invocations)");
    assert!(flags.iter().all(|b| *b == Some(false)), "{flags:?}");
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    assert_eq!(state(&f, &c).await, expected(&dir));
}

async fn a_replayed_page_changes_nothing(f: Fixture) {
    let src = MemorySource::new(Directory::generate(20, 2, "contoso.com"), 5);
    let c = connector(&f, "main", json!({}));
    run(&f, &c, &src, manual()).await;
    let want = state(&f, &c).await;
    // Replaying the whole read page by page (as after a crash between the
    // page's writes and its checkpoint) writes nothing.
    let before = f.writes.directory_writes();
    let r = run(&f, &c, &src, full()).await;
    assert_eq!(r.counts.unchanged, 22);
    assert_eq!(f.writes.directory_writes(), before);
    assert_eq!(state(&f, &c).await, want);
}

async fn one_run_per_connector_and_dead_runs_are_taken_over(f: Fixture) {
    let src = Arc::new(MemorySource::new(
        Directory::generate(10, 1, "contoso.com"),
        3,
    ));
    let c = connector(&f, "main", json!({}));
    src.fault_at(2, Fault::Hang);
    let store = f.store.clone();
    let (c2, src2) = (c.clone(), src.clone());
    let first = tokio::spawn(async move {
        SyncEngine::new(store, EngineSettings::default())
            .run(&c2, &*src2, manual())
            .await
    });
    while src.pages_read.load(std::sync::atomic::Ordering::SeqCst) < 2 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // The other stream may still be writing: wait until the first run is
    // stuck at its fault.
    let mut before = f.writes.directory_writes();
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        let now = f.writes.directory_writes();
        if now == before {
            break;
        }
        before = now;
    }
    match engine(&f).run(&c, &*src, manual()).await.unwrap() {
        RunOutcome::AlreadyRunning { holder, .. } => assert!(!holder.is_empty()),
        other => panic!("expected already running, got {other:?}"),
    }
    assert_eq!(
        f.writes.directory_writes(),
        before,
        "the second run touched nothing"
    );
    first.abort();
    src.clear_fault();
    f.clock.advance(Duration::minutes(11));
    let r = run(&f, &c, &*src, manual()).await;
    assert_eq!(r.status, RunStatus::Succeeded);
    assert_eq!(state(&f, &c).await, expected(&src.directory()));
}

async fn dry_run_lists_every_action_and_writes_nothing(f: Fixture) {
    let src = MemorySource::new(Directory::generate(12, 2, "contoso.com"), 5);
    let c = connector(&f, "main", json!({"email_domains": "contoso.com"}));
    run(&f, &c, &src, manual()).await;
    src.mutate(|d, touch| {
        d.users.remove("u00001");
        d.users.get_mut("u00002").unwrap().enabled = false;
        d.users.get_mut("u00003").unwrap().display_name = Some("Renamed".into());
        d.users.insert("u00050".into(), user(50, "contoso.com"));
        d.users.insert("u00051".into(), user(51, "elsewhere.org"));
        for id in ["u00001", "u00002", "u00003", "u00050", "u00051"] {
            touch(Touched::User(id.into()));
        }
    });
    let before = f.writes.directory_writes();
    let before_state = state(&f, &c).await;
    let RunOutcome::DryRun {
        plan,
        run,
        truncated,
    } = engine(&f)
        .run(
            &c,
            &src,
            RunRequest {
                dry_run: true,
                ..full()
            },
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(!truncated);
    let find = |id: &str| {
        plan.iter()
            .find(|p| p.id == id)
            .map(|p| (p.action, p.reason.clone()))
    };
    assert_eq!(find("u00050").unwrap().0, Action::Create);
    assert_eq!(find("u00003").unwrap().0, Action::Update);
    assert_eq!(
        find("u00002"),
        Some((Action::Disable, "disabled at the source".into()))
    );
    assert_eq!(
        find("u00001"),
        Some((Action::Remove, "no longer found in the directory".into()))
    );
    let (skip, why) = find("u00051").unwrap();
    assert_eq!(skip, Action::Skip);
    assert!(why.contains("email domains"), "{why}");
    assert!(find("u00004").is_none(), "unchanged objects are not listed");
    assert_eq!(
        (
            run.counts.created,
            run.counts.updated,
            run.counts.disabled,
            run.counts.removed
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(
        f.writes.directory_writes(),
        before,
        "a dry run writes nothing"
    );
    assert_eq!(state(&f, &c).await, before_state);
}

async fn expired_delta_cursor_leads_to_a_full_resync(f: Fixture) {
    let src = MemorySource::new(Directory::generate(10, 1, "contoso.com"), 4);
    let c = connector(&f, "main", json!({}));
    run(&f, &c, &src, manual()).await;
    src.mutate(|d, _| {
        d.users.remove("u00002");
    });
    src.expire_cursors();
    let r = run(&f, &c, &src, manual()).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    assert_eq!(r.mode, SyncMode::Full);
    assert!(
        r.message
            .as_deref()
            .unwrap()
            .contains("read in full instead"),
        "{:?}",
        r.message
    );
    assert_eq!(r.counts.removed, 1);
    assert_eq!(state(&f, &c).await, expected(&src.directory()));
}

async fn catch_up_full_sync_reconciles_missed_changes(f: Fixture) {
    let src = MemorySource::new(Directory::generate(30, 3, "contoso.com"), 8);
    let c = connector(&f, "main", json!({}));
    run(&f, &c, &src, manual()).await;
    // An outage: several windows fail while the directory changes.
    src.mutate(|d, touch| {
        d.users.remove("u00010");
        d.users.insert("u00100".into(), user(100, "contoso.com"));
        d.users.get_mut("u00011").unwrap().surname = Some("Changed".into());
        d.members.get_mut("g0002").unwrap().remove("u00001");
        touch(Touched::User("u00100".into()));
    });
    for _ in 0..3 {
        src.fault_at(1, Fault::Unavailable);
        assert_eq!(run(&f, &c, &src, manual()).await.status, RunStatus::Failed);
    }
    src.clear_fault();
    let r = run(
        &f,
        &c,
        &src,
        RunRequest {
            full: true,
            ..manual()
        },
    )
    .await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    assert_eq!(state(&f, &c).await, expected(&src.directory()));
}

async fn run_records_keep_the_last_n(f: Fixture) {
    let src = MemorySource::new(Directory::generate(3, 1, "contoso.com"), 10);
    let c = connector(&f, "main", json!({}));
    let settings = EngineSettings {
        keep_runs: 3,
        ..Default::default()
    };
    let e = SyncEngine::new(f.store.clone(), settings);
    let mut last = None;
    for i in 0..5 {
        let trigger = if i == 0 {
            Trigger::Schedule {
                window: dirsync_shared::clock::Clock::now(&*f.clock),
            }
        } else {
            Trigger::Manual { requested_by: None }
        };
        let RunOutcome::Finished(r) = e.run(&c, &src, RunRequest::new(trigger)).await.unwrap()
        else {
            panic!()
        };
        assert!(r.ended_at.is_some() && r.requests > 0);
        last = Some(r.id);
        f.clock.advance(Duration::hours(5));
    }
    let runs = f
        .store
        .list_runs(&scope(&c), PageRequest::first(10))
        .await
        .unwrap()
        .items;
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[0].id, last.unwrap(), "newest first");
}

// ---- the guard over every destructive change ---------------------------------

/// The user members of a group, as the source has them.
fn user_members(src: &MemorySource, group: &str) -> Vec<String> {
    src.directory().members[group]
        .keys()
        .filter(|m| m.starts_with('u'))
        .cloned()
        .collect()
}

/// Members leave a group, and the delta log says so.
fn leave(src: &MemorySource, group: &str, members: &[String]) {
    src.mutate(|d, touch| {
        for m in members {
            d.members.get_mut(group).unwrap().remove(m);
            touch(Touched::Member(group.into(), m.clone()));
        }
    });
}

async fn membership_removals_are_held_weighed_per_group_and_listed(f: Fixture) {
    // 200 users in 4 groups of 100 (and g0001 nested in g0000).
    let src = MemorySource::new(Directory::generate(200, 4, "contoso.com"), 50);
    let c = connector(&f, "main", json!({}));
    run(&f, &c, &src, manual()).await;
    // 30 of g0001's 100 leave it: 7% of all memberships, 30% of the group.
    let leavers: Vec<String> = user_members(&src, "g0001")[..30].to_vec();
    leave(&src, "g0001", &leavers);
    let before = state(&f, &c).await;
    let e = engine(&f);
    for read in [manual(), full()] {
        // A delta's removals and a full read's sweep alike.
        let r = run(&f, &c, &src, read).await;
        assert_eq!(r.status, RunStatus::Staged, "{:?}", r.message);
        assert!(
            says(&r, "group Group 1 would lose 30 of its 100 members"),
            "{:?}",
            r.message
        );
        assert!(says(&r, "30 membership removals"), "{:?}", r.message);
        assert_eq!(r.counts.members_removed, 0);
        assert_eq!(state(&f, &c).await, before, "a staged run removes no row");
        let listed = e.staged_actions(&scope(&c), &r.id).await.unwrap();
        let memberships: BTreeSet<String> = listed
            .iter()
            .filter(|a| a.object_type == "membership" && a.action == Action::Remove)
            .map(|a| a.id.clone())
            .collect();
        assert_eq!(memberships, leavers.iter().cloned().collect());
        if r.mode == SyncMode::Delta {
            // The cursor stayed: the next delta reads the removals again
            // (a delta reports them once), so superseding loses nothing.
            let again = run(&f, &c, &src, manual()).await;
            assert_eq!(again.status, RunStatus::Staged, "{:?}", again.message);
            assert!(
                says(&again, "30 membership removals"),
                "{:?}",
                again.message
            );
            let old = f.store.get_run(&scope(&c), &r.id).await.unwrap().unwrap();
            assert_eq!(old.status, RunStatus::Superseded);
            e.reject(&scope(&c), &again.id, None).await.unwrap();
            assert_eq!(state(&f, &c).await, before, "rejected: nothing removed");
        } else {
            let approved = e.approve(&scope(&c), &r.id, None).await.unwrap();
            let after = state(&f, &c).await;
            assert_eq!(before.members.len() - after.members.len(), 30);
            assert_eq!(
                approved.counts.members_removed, 30,
                "{:?}",
                approved.message
            );
            assert_eq!(after, expected(&src.directory()));
        }
    }
}

async fn a_run_staged_for_700_user_removals_changes_no_row_and_a_newer_run_ends_its_review(
    f: Fixture,
) {
    let src = Arc::new(MemorySource::new(
        Directory::generate(1000, 5, "contoso.com"),
        100,
    ));
    let c = connector(&f, "main", json!({}));
    run(&f, &c, &*src, manual()).await;
    delete_users(&src, 0..700);
    let before = state(&f, &c).await;
    let staged = run(&f, &c, &*src, full()).await;
    assert_eq!(staged.status, RunStatus::Staged, "{:?}", staged.message);
    assert!(
        says(
            &staged,
            "700 user removals or disables exceed the deletion guard's limit of 500"
        ),
        "{:?}",
        staged.message
    );
    assert_eq!(
        (staged.counts.removed, staged.counts.members_removed),
        (0, 0)
    );
    assert_eq!(state(&f, &c).await, before, "0 rows changed");
    let e = engine(&f);
    let listed = e.staged_actions(&scope(&c), &staged.id).await.unwrap();
    assert_eq!(
        listed.iter().filter(|a| a.object_type == "user").count(),
        700
    );

    // A newer run that has only begun already ends the review…
    let mut begun = full();
    begun.deadline = Some(tokio::time::Instant::now());
    assert!(matches!(
        e.run(&c, &*src, begun).await.unwrap(),
        RunOutcome::Continue { .. }
    ));
    let err = e.approve(&scope(&c), &staged.id, None).await.unwrap_err();
    assert!(err.to_string().contains("started after it"), "{err}");
    assert_eq!(state(&f, &c).await, before);
    // …and once it ends, the older run is superseded for good.
    let later = run(&f, &c, &*src, RunRequest::new(Trigger::Continuation)).await;
    assert_eq!(later.status, RunStatus::Staged, "{:?}", later.message);
    let old = f
        .store
        .get_run(&scope(&c), &staged.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old.status, RunStatus::Superseded);
    let err = e.approve(&scope(&c), &staged.id, None).await.unwrap_err();
    assert!(err.to_string().contains("it is superseded"), "{err}");
    assert_eq!(state(&f, &c).await, before);
}

async fn each_connector_sets_its_own_limits(f: Fixture) {
    let dir = Directory::generate(40, 4, "contoso.com");
    let mut tight = connector(
        &f,
        "tight",
        json!({"max_membership_removals": 5, "max_membership_removals_percent": 100}),
    );
    assert_eq!(tight.options.deletion_guard.memberships.max_count, 5);
    let mut default = connector(&f, "default", json!({}));
    // In accounts of their own: the same addresses in one account conflict.
    tight.account = AccountId::new("tight").unwrap();
    default.account = AccountId::new("default").unwrap();
    for (c, staged) in [(&tight, true), (&default, false)] {
        let src = MemorySource::new(dir.clone(), 10);
        run(&f, c, &src, manual()).await;
        // Six members leave, across the four groups.
        let mut gone = Vec::new();
        for g in 0..4 {
            let group = format!("g{g:04}");
            let m = user_members(&src, &group)[..1 + usize::from(g == 0)].to_vec();
            leave(&src, &group, &m);
            gone.extend(m);
        }
        assert_eq!(gone.len(), 5);
        leave(&src, "g0001", &user_members(&src, "g0001")[..1]);
        let before = state(&f, c).await;
        let r = run(&f, c, &src, manual()).await;
        let after = state(&f, c).await;
        if staged {
            assert_eq!(r.status, RunStatus::Staged, "{:?}", r.message);
            assert!(
                says(
                    &r,
                    "6 membership removals exceed the deletion guard's limit of 5"
                ),
                "{:?}",
                r.message
            );
            assert_eq!(after, before);
        } else {
            assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
            assert_eq!(r.counts.members_removed, 6);
            assert_eq!(before.members.len() - after.members.len(), 6);
        }
    }
}

async fn the_account_holds_removals_while_another_connector_is_paused_or_failed(f: Fixture) {
    let c = connector(&f, "main", json!({}));
    let mut account = Account::new(
        c.account.clone(),
        "Acme",
        Region::Europe,
        dirsync_shared::clock::Clock::now(&*f.clock),
    )
    .unwrap();
    f.store.create_account(&account).await.unwrap();
    let mut other = connector(&f, "other", json!({"enabled": false}));
    other = f.store.create_connector(&other).await.unwrap();
    let src = MemorySource::new(Directory::generate(40, 2, "contoso.com"), 10);
    run(&f, &c, &src, manual()).await;
    delete_users(&src, 0..1);
    let before = state(&f, &c).await;

    // One leaver, well inside the guard, is held while `other` is paused…
    let r = run(&f, &c, &src, manual()).await;
    assert_eq!(r.status, RunStatus::Staged, "{:?}", r.message);
    assert!(says(&r, "connector other is paused"), "{:?}", r.message);
    assert_eq!(state(&f, &c).await, before);
    // …and while its last run failed.
    other.state = ConnectorState::Enabled;
    other = f.store.update_connector(&other).await.unwrap();
    let e = engine(&f);
    e.record_failure(&other, Trigger::Continuation, "the directory is down")
        .await
        .unwrap();
    let r = run(&f, &c, &src, full()).await;
    assert_eq!(r.status, RunStatus::Staged, "{:?}", r.message);
    assert!(
        says(&r, "the last run of connector other failed"),
        "{:?}",
        r.message
    );
    assert_eq!(state(&f, &c).await, before);
    // The account can turn the hold off.
    account.hold_on_connector_trouble = false;
    f.store.update_account(&account).await.unwrap();
    let r = run(&f, &c, &src, full()).await;
    assert_eq!(
        (r.status, r.counts.removed),
        (RunStatus::Succeeded, 1),
        "{:?}",
        r.message
    );
    assert_eq!(state(&f, &c).await, expected(&src.directory()));
}

async fn an_approval_skips_what_changed_since_and_a_staged_run_expires(f: Fixture) {
    let src = MemorySource::new(Directory::generate(60, 3, "contoso.com"), 20);
    let c = connector(&f, "main", json!({}));
    run(&f, &c, &src, manual()).await;
    src.mutate(|d, _| d.users.retain(|id, _| id == "u00000" || id == "u00001"));
    let e = engine(&f);
    let s = scope(&c);

    // Not reviewed within 14 days: it expires and removes nothing.
    let first = run(&f, &c, &src, full()).await;
    assert_eq!(first.status, RunStatus::Staged);
    assert!(says(&first, "within 14 days"), "{:?}", first.message);
    let before = state(&f, &c).await;
    f.clock.advance(Duration::days(15));
    let err = e.approve(&s, &first.id, None).await.unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    let expired = f.store.get_run(&s, &first.id).await.unwrap().unwrap();
    assert_eq!(expired.status, RunStatus::Expired);
    assert_eq!(state(&f, &c).await, before);

    // A user changed since staging is left alone, and named.
    let second = run(&f, &c, &src, full()).await;
    assert_eq!(second.status, RunStatus::Staged);
    let mut changed = before.users["u00005"].clone();
    changed.display_name = Some("Renamed Since".into());
    f.store.upsert_users(&s, &[changed.clone()]).await.unwrap();
    let approved = e.approve(&s, &second.id, None).await.unwrap();
    let review = approved.review.unwrap();
    assert_eq!(review.skipped.len(), 1, "{:?}", review.skipped);
    assert!(review.skipped[0].contains(changed.primary_email.as_str()));
    let after = state(&f, &c).await;
    assert_eq!(after.users.len(), 3, "the two kept and the changed one");
    assert_eq!(after.users["u00005"], changed);
}

async fn a_run_keeps_its_lease_while_it_works_and_stops_once_it_has_lost_it(f: Fixture) {
    let dir = Directory::generate(40, 2, "contoso.com");
    for (heartbeat, keeps) in [(20, true), (3_600_000, false)] {
        let src = Arc::new(MemorySource::new(dir.clone(), 10));
        *src.page_delay.lock().unwrap() = std::time::Duration::from_millis(100);
        let mut c = connector(&f, &format!("beat{heartbeat}"), json!({}));
        c.account = AccountId::new(format!("beat{heartbeat}")).unwrap();
        let settings = EngineSettings {
            heartbeat: std::time::Duration::from_millis(heartbeat),
            ..Default::default()
        };
        let slow = SyncEngine::new(f.store.clone(), settings);
        let (c2, src2) = (c.clone(), src.clone());
        let first = tokio::spawn(async move { slow.run(&c2, &*src2, manual()).await });
        while src.pages_read.load(std::sync::atomic::Ordering::SeqCst) < 2 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // Longer than the lease lasts without a renewal.
        f.clock.advance(Duration::minutes(11));
        tokio::time::sleep(std::time::Duration::from_millis(80)).await;
        let fast = MemorySource::new(dir.clone(), 10);
        let second = engine(&f).run(&c, &fast, manual()).await.unwrap();
        let first = first.await.unwrap().unwrap();
        if keeps {
            assert!(
                matches!(second, RunOutcome::AlreadyRunning { .. }),
                "the heartbeat kept the lease: {second:?}"
            );
            assert!(
                matches!(&first, RunOutcome::Finished(r) if r.status == RunStatus::Succeeded),
                "{first:?}"
            );
        } else {
            assert!(
                matches!(&second, RunOutcome::Finished(r) if r.status == RunStatus::Succeeded),
                "the lapsed lease was taken over: {second:?}"
            );
            assert!(
                matches!(first, RunOutcome::AlreadyRunning { .. }),
                "the first run stopped before writing again: {first:?}"
            );
        }
        assert_eq!(state(&f, &c).await, expected(&dir));
    }
}

/// A source whose full read is `full` and whose delta rounds are `pages`,
/// one page each: what a real delta does when an object changes twice in
/// one round.
struct Scripted {
    full: Vec<Change>,
    pages: Vec<Vec<Change>>,
}

#[async_trait::async_trait]
impl DirectorySource for Scripted {
    fn streams(&self) -> &'static [Stream] {
        &[Stream::Groups]
    }

    async fn read(&self, _: Stream, from: &ReadFrom) -> Result<SourcePage, SourceError> {
        let (changes, at) = match from {
            ReadFrom::Full => (self.full.clone(), self.pages.len()),
            ReadFrom::Delta(_) => (self.pages[0].clone(), 1),
            ReadFrom::Continue(n) => {
                let n: usize = n.parse().unwrap();
                (self.pages[n].clone(), n + 1)
            }
        };
        let next = if at < self.pages.len() {
            Next::Page(at.to_string())
        } else {
            Next::Done {
                cursor: Some("next".into()),
            }
        };
        Ok(SourcePage {
            changes,
            next,
            stats: Default::default(),
        })
    }

    async fn test_connection(&self) -> ConnectionReport {
        ConnectionReport::new()
    }
}

async fn a_later_page_has_the_last_word_on_a_held_change(f: Fixture) {
    let users: Vec<User> = (0..3).map(|i| user(i, "contoso.com")).collect();
    let member = |i: usize| Member::new(users[i].id.clone(), MemberKind::User);
    let mut disabled = users[2].clone();
    disabled.enabled = false;
    let mut full: Vec<Change> = users.iter().cloned().map(Change::User).collect();
    full.push(Change::Group(group(0)));
    full.push(Change::AddMembers {
        group: sid("g0000"),
        members: vec![member(0), member(1)],
    });
    let gone = Removal::Deleted;
    let pages = vec![
        // Taken away on one page…
        vec![
            Change::RemoveMembers {
                group: sid("g0000"),
                members: vec![member(0), member(1)],
            },
            Change::RemoveUser {
                id: users[0].id.clone(),
                reason: gone.clone(),
            },
            Change::User(disabled),
        ],
        // …and given back on a later one (but for member 1).
        vec![
            Change::User(users[0].clone()),
            Change::User(users[2].clone()),
            Change::AddMembers {
                group: sid("g0000"),
                members: vec![member(0)],
            },
        ],
    ];
    let src = Scripted { full, pages };
    let c = connector(&f, "main", json!({}));
    let first = run(&f, &c, &src, manual()).await;
    assert_eq!(first.status, RunStatus::Succeeded, "{:?}", first.message);
    let r = run(&f, &c, &src, manual()).await;
    assert_eq!(r.mode, SyncMode::Delta);
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    assert_eq!(
        (
            r.counts.removed,
            r.counts.disabled,
            r.counts.members_removed
        ),
        (0, 0, 1),
        "only what the last word took away: {:?}",
        r.message
    );
    let st = state(&f, &c).await;
    assert_eq!(st.users.len(), 3);
    assert!(st.users.values().all(|u| u.enabled), "re-enabled later");
    assert_eq!(
        st.members,
        BTreeSet::from([("g0000".to_owned(), users[0].id.to_string())])
    );
}

async fn a_delta_rounds_membership_removals_are_weighed_against_all_stored(f: Fixture) {
    // 60 users in 30 groups of 4 (each user in two): 120 memberships, and
    // g0001 nested in g0000. Twenty leave, at most one per group: no group
    // reaches the floor, but together they are 16% of what is stored.
    let src = MemorySource::new(Directory::generate(60, 30, "contoso.com"), 20);
    let c = connector(&f, "main", json!({}));
    run(&f, &c, &src, manual()).await;
    for g in 0..20 {
        let group = format!("g{g:04}");
        leave(&src, &group, &user_members(&src, &group)[..1]);
    }
    let before = state(&f, &c).await;
    let r = run(&f, &c, &src, manual()).await;
    assert_eq!(
        (r.mode, r.status),
        (SyncMode::Delta, RunStatus::Staged),
        "{:?}",
        r.message
    );
    assert!(
        says(&r, "20 membership removals of 121 stored memberships"),
        "{:?}",
        r.message
    );
    assert_eq!(state(&f, &c).await, before);
}
