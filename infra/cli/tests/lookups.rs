//! The CLI's look-ups, statuses and terminal manners, driven through the
//! built binary against a directory synced from the Entra simulator: a
//! 2,600-member group read to its end by id, name and address; groups
//! through a three-level nest with a cycle; not found is exit 2; a closed
//! pipe ends quietly; a rejected run is listed as rejected; the `--json`
//! shapes are the documented ones.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

mod common;
use common::{Cli, stderr, stdout};

use dirsync_entra_sim::{EntraSim, GenSpec, SimGroup};
use serde_json::Value;
use uuid::Uuid;

/// The keys of a JSON object, sorted.
fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

const STAFF: u32 = 2600;

/// A tenant of 2,600 users, "All Staff" with every one of them, and a nest
/// Level A ⊂ Level B ⊂ Level C ⊂ Level A (a cycle) with one user in A;
/// synced by a legacy connector acme/legacy. Returns that user's address.
async fn synced() -> (EntraSim, Uuid, Cli, String) {
    let sim = EntraSim::start().await.unwrap();
    let tenant = common::contoso(&sim);
    let mut spec = GenSpec::sized(STAFF, 4, 11);
    spec.guest_ratio = 0.0;
    spec.no_mail_ratio = 0.0;
    spec.nested_groups = false;
    sim.generate_directory(tenant, spec);
    let users = sim.snapshot(tenant).users;
    let staff = Uuid::new_v4();
    sim.add_group(
        tenant,
        SimGroup::distribution(staff, "All Staff", "allstaff@contoso.com"),
    );
    for u in &users {
        sim.add_member(tenant, &staff.to_string(), &u.id.to_string());
    }
    let levels: Vec<Uuid> = ["Level A", "Level B", "Level C"]
        .iter()
        .map(|name| {
            let id = Uuid::new_v4();
            sim.add_group(tenant, SimGroup::security(id, name));
            id
        })
        .collect();
    for (inner, outer) in [(0, 1), (1, 2), (2, 0)] {
        sim.add_member(
            tenant,
            &levels[outer].to_string(),
            &levels[inner].to_string(),
        );
    }
    let someone = &users[0];
    sim.add_member(tenant, &levels[0].to_string(), &someone.id.to_string());
    let client = common::legacy_app(&sim, tenant);
    let cli = Cli::new();
    cli.legacy_connector(&sim, client);
    let run = cli.json(&["sync", "acme", "legacy"]);
    assert_eq!(run["status"], "succeeded", "{run}");
    let address = someone.mail.clone().expect("a user with mail");
    (sim, tenant, cli, address)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn look_ups_reach_the_end_and_the_cli_behaves() {
    let (sim, tenant, cli, someone) = synced().await;

    // All Staff in full, however it is named.
    let by_name = cli.json(&["members", "acme", "legacy", "All Staff"]);
    assert_eq!(keys(&by_name), ["group", "more", "rows"]);
    assert_eq!(keys(&by_name["group"]), ["id", "mail", "name"]);
    let rows = by_name["rows"].as_array().unwrap();
    assert_eq!(
        rows.len() as u32,
        STAFF,
        "every member, past the first page"
    );
    assert_eq!(by_name["more"], false);
    assert_eq!(
        keys(&rows[0]),
        ["address", "depth", "id", "kind", "name", "via"]
    );
    assert!(
        rows.iter()
            .all(|r| r["address"].is_string() && r["name"].is_string())
    );
    let id = by_name["group"]["id"].as_str().unwrap().to_owned();
    for named in [id.as_str(), "ALLSTAFF@contoso.com"] {
        let again = cli.json(&["members", "acme", "legacy", named]);
        assert_eq!(
            again["rows"].as_array().unwrap().len() as u32,
            STAFF,
            "{named}"
        );
    }
    let group = cli.json(&["group", "acme", "legacy", "allstaff@contoso.com"]);
    assert_eq!(group["id"], id.as_str());

    // --limit: that many, and a notice of the rest.
    let limited = cli.json(&["members", "acme", "legacy", "All Staff", "--limit", "10"]);
    assert_eq!(limited["rows"].as_array().unwrap().len(), 10);
    assert_eq!(limited["more"], true);
    let text = stdout(&cli.run(&["members", "acme", "legacy", "All Staff", "--limit", "10"]));
    assert!(text.contains("more rows after these 10"), "{text}");
    assert!(text.lines().nth(1).unwrap().starts_with("MEMBER"), "{text}");

    // A user's groups through the nest and its cycle, each once.
    let direct = cli.json(&["groups", "acme", "legacy", &someone]);
    let names = |v: &Value| -> Vec<(String, u64, Value)> {
        let mut n: Vec<(String, u64, Value)> = v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| g["name"].as_str().unwrap().starts_with("Level"))
            .map(|g| {
                (
                    g["name"].as_str().unwrap().to_owned(),
                    g["depth"].as_u64().unwrap(),
                    g["via"].clone(),
                )
            })
            .collect();
        n.sort_by(|a, b| a.0.cmp(&b.0));
        n
    };
    assert_eq!(names(&direct).len(), 1, "{direct}");
    let all = cli.json(&["groups", "acme", "legacy", &someone, "--transitive"]);
    let levels = names(&all);
    assert_eq!(
        levels
            .iter()
            .map(|(n, d, _)| (n.as_str(), *d))
            .collect::<Vec<_>>(),
        [("Level A", 1), ("Level B", 2), ("Level C", 3)],
        "{all}"
    );
    assert!(levels[0].2.is_null() && levels[1].2.is_string());
    let nested = cli.json(&["members", "acme", "legacy", "Level C", "--transitive"]);
    let kinds: Vec<(&str, u64)> = nested["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["kind"].as_str().unwrap(), m["depth"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        kinds.iter().filter(|(k, _)| *k == "user").count(),
        1,
        "{nested}"
    );
    // B and A: C itself, reached again through the cycle, is no member of
    // itself.
    assert_eq!(
        kinds.iter().filter(|(k, _)| *k == "group").count(),
        2,
        "{nested}"
    );

    // Not found: exit 2 and what was looked for, never an empty success.
    for args in [
        vec!["members", "acme", "legacy", "No Such Group"],
        vec!["groups", "acme", "legacy", "nobody@contoso.com"],
        vec![
            "group",
            "acme",
            "legacy",
            "00000000-0000-0000-0000-000000000000",
        ],
        vec!["members", "acme", "nope", "All Staff"],
        vec!["members", "acme", "legacy", ".."],
    ] {
        let out = cli.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stdout(&out));
        assert!(stdout(&out).is_empty(), "{args:?}");
        assert!(
            stderr(&out).starts_with("dirsync: "),
            "{args:?}: {}",
            stderr(&out)
        );
    }

    // Into `head -1`: the first line, then a quiet end.
    let mut child = cli
        .command(&["members", "acme", "legacy", "All Staff"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("All Staff"), "{first}");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    assert!(
        !stderr(&out).contains("panicked") && !stderr(&out).contains("Broken pipe"),
        "{}",
        stderr(&out)
    );

    // A staged run, rejected: listed as rejected, its summary counted.
    let users = sim.snapshot(tenant).users;
    for u in users.iter().take(600) {
        sim.delete_user(tenant, &u.id.to_string());
    }
    let staged = cli.run(&["--json", "sync", "acme", "legacy"]);
    assert_eq!(staged.status.code(), Some(3), "{}", stderr(&staged));
    let run: Value = serde_json::from_slice(&staged.stdout).unwrap();
    let run_id = run["id"].as_str().unwrap().to_owned();
    let view = cli.json(&["runs", "show", "acme", "legacy", &run_id]);
    assert_eq!(keys(&view), ["run", "staged_actions", "summary"]);
    let removals = view["summary"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["object_type"] == "user" && t["action"] == "remove")
        .unwrap_or_else(|| panic!("{}", view["summary"]));
    assert_eq!(removals["count"], 600);
    let text = stdout(&cli.run(&["runs", "show", "acme", "legacy", &run_id]));
    assert!(text.contains("dirsync approve acme legacy"), "{text}");
    cli.json(&["reject", "acme", "legacy", &run_id]);
    let listed = stdout(&cli.run(&["runs", "list", "acme", "legacy"]));
    let line = listed.lines().find(|l| l.starts_with(&run_id)).unwrap();
    assert!(line.contains("rejected"), "{listed}");

    // Shell completions come from the same model.
    let bash = cli.run(&["completions", "bash"]);
    assert!(bash.status.success());
    assert!(
        stdout(&bash).contains("migrate"),
        "the completions know every command"
    );
}
