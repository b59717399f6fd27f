//! `webhook-inbox`, the binary, on an inbox in SQLite and one in PostgreSQL: each command,
//! its text and `--json`, and its exit codes.
//!
//! PostgreSQL at `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`); without
//! one its trials are reported as ignored, or fail when `CI` is set.
#![cfg(all(feature = "cli", feature = "test-util"))]

mod common;

use std::process::Command;

use common::inbox::{
    no_wait, send_five, send_github, send_github_as, send_signed, unique, work_five, Five,
};
use serde_json::Value;
use tower_webhook::inbox::{Dialect, Inbox, PostgresInbox, SqliteInbox};
use tower_webhook::testkit::Delivery;

/// Runs `webhook-inbox` on `database` (and `queue`) with `args`: its exit code and output.
fn run(database: &str, queue: &str, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_webhook-inbox"))
        .args(["--database", database, "--queue", queue])
        .args(args)
        .env_remove("WEBHOOK_INBOX_DATABASE")
        .output()
        .expect("webhook-inbox runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn json(database: &str, queue: &str, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let (code, out, err) = run(database, queue, &args);
    assert_eq!(code, 0, "{args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

/// An inbox with [`send_five`]'s deliveries worked (four done, one dead): its deliveries.
async fn filled<D: Dialect>(inbox: &Inbox<D>) -> Five {
    let five = send_five(inbox).await;
    work_five(inbox).await;
    five
}

/// A body's terminal escapes and a type read from the body, through `show` and `list`.
async fn escapes_and_body_types<D: Dialect>(inbox: &Inbox<D>, db: &str, q: &str) {
    // A body's terminal escapes are shown as text, not sent to the operator's terminal.
    let escapes = send_github(
        inbox,
        "term",
        "push",
        "title \u{1b}]0;pwned\u{7} red \u{1b}[31m \u{9b}2J",
    )
    .await;
    let (code, out, _) = run(db, q, &["show", &escapes]);
    assert_eq!(code, 0);
    assert!(!out.contains(['\u{1b}', '\u{7}', '\u{9b}']), "{out:?}");
    assert!(
        out.contains(r"title \u{1b}]0;pwned\u{7} red \u{1b}[31m \u{9b}2J"),
        "{out}"
    );

    // Event types where the senders put them: Standard Webhooks' and Stripe's in the body's
    // `type`, so `list --type` and `replay --dead --type` find them.
    let standard =
        tower_webhook::scheme::StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap();
    let paid = Delivery::new(r#"{"type":"invoice.paid","data":{}}"#).id(unique("msg"));
    assert_eq!(
        send_signed(inbox, standard.clone(), "billing", &paid).await,
        202
    );
    let stripe = tower_webhook::scheme::HmacScheme::stripe("whsec_stripe_test").unwrap();
    let evt = unique("evt");
    let paid = Delivery::new(format!(
        r#"{{"id":"{evt}","object":"event","type":"invoice.paid"}}"#
    ));
    assert_eq!(send_signed(inbox, stripe, "stripe", &paid).await, 202);
    let listed = json(db, q, &["list", "--type", "invoice.paid"]);
    let layers: Vec<&str> = listed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["layer"].as_str().unwrap())
        .collect();
    assert_eq!(layers, ["stripe", "billing"], "{listed}");
    // A type from the body may hold any character: shown escaped in text.
    let odd = Delivery::new(r#"{"type":"paid\u001b[2J"}"#).id(unique("msg"));
    assert_eq!(send_signed(inbox, standard, "odd", &odd).await, 202);
    let (code, out, _) = run(db, q, &["list", "--layer", "odd"]);
    assert_eq!(code, 0);
    assert!(
        !out.contains('\u{1b}') && out.contains(r"paid\u{1b}[2J"),
        "{out:?}"
    );
}

async fn suite<D: Dialect>(inbox: Inbox<D>, database: String, queue: String) {
    let inbox = inbox.with_retry(no_wait());
    let Five { a1, a2, a3, b2, .. } = filled(&inbox).await;
    let (db, q) = (database.as_str(), queue.as_str());

    // counts
    let counts = json(db, q, &["counts"]);
    assert_eq!(counts["done"], 4);
    assert_eq!(counts["dead"], 1);
    assert_eq!(counts["queued"], 0);
    let (code, out, _) = run(db, q, &["counts"]);
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .any(|l| l.starts_with("dead") && l.ends_with(" 1")),
        "{out}"
    );

    // list: filters, paging, text and JSON
    let dead = json(db, q, &["list", "--state", "dead"]);
    assert_eq!(dead["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(dead["jobs"][0]["event_id"], a3.as_str());
    assert_eq!(dead["jobs"][0]["attempts"], 3);
    assert!(dead["next"].is_null());
    let pushes = json(db, q, &["list", "--type", "push", "--layer", "github"]);
    let ids: Vec<&str> = pushes["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [a3.as_str(), a1.as_str()]);
    let first = json(db, q, &["list", "-n", "1"]);
    assert_eq!(first["jobs"][0]["event_id"], b2.as_str());
    let next = first["next"].as_str().unwrap().to_owned();
    let second = json(db, q, &["list", "-n", "1", "--after", &next]);
    assert_ne!(second["jobs"][0]["event_id"], b2.as_str());
    let (code, out, _) = run(db, q, &["list", "--event-id", &a2]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.contains(&a2) && out.contains("done") && out.contains("issues"),
        "{out}"
    );

    // show: by the delivery's id or the job's, text and JSON
    let shown = json(db, q, &["show", &a3]);
    assert_eq!(shown["state"], "dead");
    assert_eq!(shown["attempt_log"].as_array().unwrap().len(), 3);
    assert_eq!(shown["attempt_log"][2]["outcome"], "dead");
    assert_eq!(shown["body"], r#"{"n":3,"fail":true}"#);
    let task = shown["task_id"].as_str().unwrap().to_owned();
    let (code, out, _) = run(db, q, &["show", &task]);
    assert_eq!(code, 0);
    assert!(
        out.contains("#3") && out.contains("the handler refused"),
        "{out}"
    );
    assert!(out.contains("x-github-event: push"), "{out}");
    assert!(
        out.contains("\"fail\": true"),
        "the body pretty-printed: {out}"
    );
    let (code, _, err) = run(db, q, &["show", "no-such-delivery"]);
    assert_eq!(code, 3, "{err}");

    escapes_and_body_types(&inbox, db, q).await;

    // replay by a delivery id with two jobs, the newer not dead: the dead one is replayed.
    send_github_as(&inbox, "mirror", "push", r#"{"n":3}"#, &a3).await;
    // replay: one, then one that is not dead, then by filter
    let (code, out, err) = run(db, q, &["replay", &a3]);
    assert_eq!((code, out.as_str()), (0, "replayed 1 job(s)\n"), "{err}");
    let (code, _, err) = run(db, q, &["replay", &a3]);
    assert_eq!(code, 3, "a queued job is not replayed: {err}");
    assert!(err.contains("not dead-lettered"), "{err}");
    assert_eq!(
        json(db, q, &["list", "--state", "queued"])["jobs"][0]["event_id"],
        a3.as_str()
    );
    assert_eq!(
        json(db, q, &["replay", "--dead", "--type", "push"])["replayed"],
        0
    );

    // purge: the done jobs, with a date or an age
    let purged = json(db, q, &["purge", "--before", "2000-01-01"]);
    assert_eq!(purged["purged"], 0);
    assert_eq!(purged["before"], "2000-01-01T00:00:00.000Z");
    // An hour ago, written at +05:00 with a fraction: the offset is read, so the jobs done a
    // moment ago are kept (it was once dropped, and this purged them).
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let at_plus_five = plus_five_hours(hour_ago);
    let purged = json(db, q, &["purge", "--before", &at_plus_five]);
    assert_eq!(purged["purged"], 0, "{at_plus_five}");
    assert_eq!(json(db, q, &["counts"])["done"], 4);
    // SQLite keeps when a job was done in whole seconds: a second later, it was before now.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (code, out, _) = run(db, q, &["purge", "--older-than", "0s"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("purged 4 done job(s)"), "{out}");
    assert_eq!(json(db, q, &["counts"])["done"], 0);
}

/// `at` as RFC 3339 at the offset +05:00, with microseconds: `2026-12-06T12:55:18.208931+05:00`.
fn plus_five_hours(at: std::time::SystemTime) -> String {
    let since = at.duration_since(std::time::UNIX_EPOCH).unwrap();
    let secs = since.as_secs() + 5 * 3600;
    let days = i64::try_from(secs / 86_400).unwrap();
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let rest = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}+05:00",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_micros()
    )
}

/// Wrong command lines exit 2 with clap's message, an unreachable database 1.
fn usage_and_unreachable() {
    let bin = env!("CARGO_BIN_EXE_webhook-inbox");
    let no_database = Command::new(bin)
        .arg("counts")
        .env_remove("WEBHOOK_INBOX_DATABASE")
        .output()
        .unwrap();
    assert_eq!(no_database.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_database.stderr).contains("--database"));
    for args in [
        &["list", "--state", "finished"][..],
        &["purge", "--before", "yesterday"],
        &["purge", "--before", "2026-02-31"],
        &["purge", "--before", "2026-02-31T10:00:00Z"],
        &["purge", "--before", "2026-12-06T07:55:18.208931+05:00junk"],
        &["purge", "--older-than", "5é"],
        &["purge", "--older-than", "é"],
        &["purge", "--older-than", "999999999999999d"],
        &["purge"],
        &["replay"],
        &["replay", "x", "--dead"],
        &["frobnicate"],
    ] {
        let (code, _, err) = run("sqlite://unused.db", "q", args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    let help = Command::new(bin).arg("--help").output().unwrap();
    assert_eq!(help.status.code(), Some(0));
    let help = String::from_utf8_lossy(&help.stdout);
    for command in ["counts", "list", "show", "replay", "purge"] {
        assert!(help.contains(command), "{help}");
    }
    let (code, _, err) = run("/no/such/inbox.db", "q", &["counts"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("does not exist"), "{err}");
    let (code, _, err) = run("postgres://postgres@127.0.0.1:1/none", "q", &["counts"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
}

/// Every command pointed at a database that holds no inbox: refused (exit 1, saying so), and
/// the database left as it was: an SQLite file byte for byte (no table, no WAL switch), a
/// PostgreSQL database without apalis's schema or the inbox's tables.
async fn foreign_databases_are_left_alone(dir: std::path::PathBuf, postgres: Option<String>) {
    use tower_webhook::store::sqlite::sqlx as lite;
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notes.db");
    let options = lite::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let pool = lite::SqlitePool::connect_with(options).await.unwrap();
    lite::query("CREATE TABLE notes (body TEXT)")
        .execute(&pool)
        .await
        .unwrap();
    lite::query("INSERT INTO notes VALUES ('mine')")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let before = std::fs::read(&path).unwrap();
    let commands: [&[&str]; 7] = [
        &["counts"],
        &["list"],
        &["show", "x"],
        &["replay", "x"],
        &["replay", "--dead", "--layer", "x"],
        &["purge", "--older-than", "1d"],
        &["list", "--json"],
    ];
    for database in [
        path.display().to_string(),
        format!("sqlite://{}", path.display()),
        format!("sqlite://{}?mode=rwc", path.display()),
    ] {
        for args in commands {
            let (code, _, err) = run(&database, "q", args);
            assert_eq!(code, 1, "{database} {args:?}: {err}");
            assert!(err.contains("holds no webhook inbox"), "{args:?}: {err}");
            assert!(!err.contains("panicked"), "{args:?}: {err}");
        }
    }
    assert!(
        std::fs::read(&path).unwrap() == before,
        "the file was changed"
    );
    let wal = dir.join("notes.db-wal");
    assert!(!wal.exists(), "switched to WAL");
    let Some(url) = postgres else { return };
    let admin = tower_webhook::store::postgres::sqlx::PgPool::connect(&url)
        .await
        .unwrap();
    let name = format!("tw_foreign_{}", std::process::id());
    let sql = |text: String| async {
        tower_webhook::store::postgres::sqlx::query(
            tower_webhook::store::postgres::sqlx::AssertSqlSafe(text),
        )
        .execute(&admin)
        .await
        .unwrap();
    };
    sql(format!("DROP DATABASE IF EXISTS {name}")).await;
    sql(format!("CREATE DATABASE {name}")).await;
    let (base, _) = url.rsplit_once('/').unwrap();
    let foreign = format!("{base}/{name}");
    for args in commands {
        let (code, _, err) = run(&foreign, "q", args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains("holds no webhook inbox"), "{args:?}: {err}");
    }
    let pool = tower_webhook::store::postgres::sqlx::PgPool::connect(&foreign)
        .await
        .unwrap();
    let created: i64 = tower_webhook::store::postgres::sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    assert_eq!(created, 0, "something was created in the foreign database");
    sql(format!("DROP DATABASE {name}")).await;
}

fn main() -> std::process::ExitCode {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = common::database_url();
    let reachable = runtime.block_on(common::inbox::postgres_reachable());
    let clean = reachable.is_ok();
    let dir = std::env::temp_dir().join(format!("tower-webhook-cli-{}", std::process::id()));
    let mut trials = vec![
        libtest_mimic::Trial::test("usage_and_unreachable", || {
            usage_and_unreachable();
            Ok(())
        }),
        common::trial("sqlite::every_command", {
            let dir = dir.clone();
            || async move {
                std::fs::create_dir_all(&dir).unwrap();
                let path = dir.join("inbox.db");
                let inbox = SqliteInbox::open(&path).await.unwrap();
                let database = format!("sqlite://{}", path.display());
                suite(
                    inbox,
                    database,
                    tower_webhook::inbox::DEFAULT_QUEUE.to_owned(),
                )
                .await;
            }
        }),
    ];
    trials.push(common::trial("foreign_databases_are_left_alone", {
        let (dir, url) = (dir.join("foreign"), url.clone());
        let postgres = reachable.is_ok().then_some(url);
        move || foreign_databases_are_left_alone(dir, postgres)
    }));
    trials.extend(common::needing(
        "PostgreSQL",
        "DATABASE_URL",
        &url.clone(),
        reachable,
        vec![common::trial(
            "postgres::every_command",
            move || async move {
                let queue = unique("test-queue");
                let inbox = PostgresInbox::connect(&url)
                    .await
                    .unwrap()
                    .with_queue(&queue);
                suite(inbox, url, queue).await;
            },
        )],
    ));
    let code = common::run(trials);
    let _ = std::fs::remove_dir_all(&dir);
    if clean {
        runtime.block_on(common::inbox::remove_this_runs_rows());
    }
    code
}
