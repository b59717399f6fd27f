//! `webhook-inbox`: what an inbox holds, from a terminal (feature `cli`). The binary of the
//! same name is [`main`]; the operations are [`Inbox`]'s own (see [`Inbox::jobs`]).
//!
//! ```text
//! webhook-inbox --database sqlite://webhooks.db counts
//! webhook-inbox --database postgres://localhost/app list --state dead --layer stripe
//! webhook-inbox show 01JF3Q9W6M7C5S2V8X4T0R1B2N
//! webhook-inbox replay --dead --type invoice.paid
//! webhook-inbox purge --before 2026-11-01
//! ```
//!
//! Every command takes `--json` for one JSON document on standard output. The exit code:
//!
//! | code | meaning |
//! | ---: | --- |
//! | 0 | done (a filter that matched nothing is done too: its count is 0) |
//! | 1 | the database failed, or could not be reached |
//! | 2 | the command line is wrong |
//! | 3 | `show` or `replay` of one job: there is no such job (or, for `replay`, it is not dead-lettered) |

use std::ffi::OsString;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Parser, Subcommand};
use serde_json::{json, Value};

use super::text::{parse_time, rfc3339};
use super::{Dialect, Inbox, InboxError, InboxErrorKind, JobDetail, JobFilter, JobState};
use super::{PostgresInbox, SqliteInbox, DEFAULT_QUEUE};

mod show;
use show::{detail_json, detail_text, line, summary_json};

/// See what an inbox of tower-webhook holds, and fix it: counts, lists, one delivery with
/// its attempts, replays and purges, on an SQLite file or a PostgreSQL database.
#[derive(Debug, Parser)]
#[command(name = "webhook-inbox", version)]
struct Cli {
    /// The inbox's database: `sqlite://FILE` (or a path to the file) or `postgres://...`.
    #[arg(long, short = 'd', env = "WEBHOOK_INBOX_DATABASE")]
    database: String,
    /// The inbox's queue.
    #[arg(long, short = 'q', default_value = DEFAULT_QUEUE, global = true)]
    queue: String,
    /// One JSON document on standard output rather than text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// How many jobs the inbox holds, by state.
    Counts,
    /// The jobs, newest first, filtered.
    List {
        #[command(flatten)]
        filter: Filter,
        /// How many (at most 500).
        #[arg(long, short = 'n', default_value_t = 50)]
        limit: u32,
        /// Older than this job: the `next` a page printed.
        #[arg(long)]
        after: Option<String>,
    },
    /// One job, whole: its headers, its body and every attempt.
    Show {
        /// The job's id, or its delivery's (event) id.
        id: String,
    },
    /// Queues a dead-lettered job again, or every one a filter matches (`--dead`).
    Replay {
        /// The job's id, or its delivery's id.
        #[arg(required_unless_present = "dead", conflicts_with = "dead")]
        id: Option<String>,
        /// Every dead-lettered job the filter matches.
        #[arg(long)]
        dead: bool,
        #[command(flatten)]
        filter: ReplayFilter,
    },
    /// Deletes the done jobs finished before a time, with their attempts.
    Purge {
        /// `2026-11-01` or `2026-11-01T12:00:00Z` (UTC).
        #[arg(long, value_parser = parse_time, required_unless_present = "older_than")]
        before: Option<SystemTime>,
        /// `30d`, `12h` or `45m`: before that long ago.
        #[arg(long, value_parser = parse_age, conflicts_with = "before")]
        older_than: Option<Duration>,
    },
}

#[derive(Debug, clap::Args)]
struct Filter {
    /// queued, running, retrying, dead or done.
    #[arg(long, short = 's')]
    state: Option<JobState>,
    #[command(flatten)]
    rest: ReplayFilter,
}

#[derive(Debug, clap::Args)]
struct ReplayFilter {
    /// The name of the layer that received the deliveries.
    #[arg(long, short = 'l')]
    layer: Option<String>,
    /// The deliveries' event type.
    #[arg(long = "type", short = 't')]
    event_type: Option<String>,
    /// A delivery's id (or a job's).
    #[arg(long, short = 'e')]
    event_id: Option<String>,
}

impl ReplayFilter {
    fn filter(&self, state: Option<JobState>) -> JobFilter {
        JobFilter {
            state,
            layer: self.layer.clone(),
            event_type: self.event_type.clone(),
            event_id: self.event_id.clone(),
        }
    }
}

/// Reads an age such as `30d`, `12h`, `45m` or `90s`.
fn parse_age(text: &str) -> Result<Duration, String> {
    let wrong = || format!("{text:?} is not an age such as 30d, 12h, 45m or 90s");
    let trimmed = text.trim();
    let unit = trimmed.chars().next_back().ok_or_else(wrong)?;
    let number = &trimmed[..trimmed.len() - unit.len_utf8()];
    let secs: u64 = match unit {
        'd' => 86_400,
        'h' => 3_600,
        'm' => 60,
        's' => 1,
        _ => return Err(format!("{text:?}: the unit is one of d, h, m, s")),
    };
    // Digits only: `u64::from_str` would take a leading `+`.
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(wrong());
    }
    let number: u64 = number.parse().map_err(|_| wrong())?;
    number
        .checked_mul(secs)
        .map(Duration::from_secs)
        .filter(|age| SystemTime::now().checked_sub(*age).is_some())
        .ok_or_else(|| format!("{text:?} reaches back past any time this machine can tell"))
}

/// What a command ended with: its exit code and what it printed.
enum Failure {
    NotFound(String),
    Inbox(InboxError),
}

impl From<InboxError> for Failure {
    fn from(err: InboxError) -> Self {
        Self::Inbox(err)
    }
}

/// The command line, on `args` (the program's name first): what it prints goes to standard
/// output (and errors to standard error); its exit code is returned.
pub fn main_with(args: impl IntoIterator<Item = impl Into<OsString> + Clone>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(2));
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: could not start the runtime: {err}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(Failure::NotFound(what)) => {
            eprintln!("error: {what}");
            ExitCode::from(3)
        }
        Err(Failure::Inbox(err)) => {
            eprintln!("error: {err}");
            ExitCode::from(1)
        }
    }
}

/// The `webhook-inbox` binary: [`main_with`] on the process's arguments.
pub fn main() -> ExitCode {
    main_with(std::env::args_os())
}

async fn run(cli: Cli) -> Result<String, Failure> {
    let database = &cli.database;
    if database.starts_with("postgres://") || database.starts_with("postgresql://") {
        let inbox = PostgresInbox::connect_existing(database).await?;
        command(&inbox.with_queue(&cli.queue), &cli).await
    } else {
        // A mistyped path would otherwise make a new, empty inbox.
        let path = database.strip_prefix("sqlite://").unwrap_or(database);
        let path = path.split('?').next().unwrap_or_default();
        if !std::path::Path::new(path).exists() {
            return Err(Failure::Inbox(InboxError::new(
                InboxErrorKind::Unavailable,
                format!("no SQLite inbox at {path}: the file does not exist"),
            )));
        }
        let inbox = match database.strip_prefix("sqlite://") {
            Some(_) => {
                SqliteInbox::attach(database.parse().map_err(|err| {
                    InboxError::new(InboxErrorKind::Unavailable, format!("{database}: {err}"))
                })?)
                .await?
            }
            None => SqliteInbox::open_existing(database).await?,
        };
        command(&inbox.with_queue(&cli.queue), &cli).await
    }
}

async fn command<D: Dialect>(inbox: &Inbox<D>, cli: &Cli) -> Result<String, Failure> {
    let json = cli.json;
    match &cli.command {
        Command::Counts => {
            let counts = inbox.counts().await?;
            let retrying = counts.failed;
            let rows = [
                ("queued", counts.queued.saturating_sub(retrying)),
                ("running", counts.running),
                ("retrying", retrying),
                ("dead", counts.dead),
                ("done", counts.done),
            ];
            if json {
                let map: serde_json::Map<String, Value> = rows
                    .iter()
                    .map(|(name, n)| ((*name).to_owned(), json!(n)))
                    .collect();
                return Ok(format!("{}\n", Value::Object(map)));
            }
            Ok(rows.iter().fold(String::new(), |mut out, (name, n)| {
                let _ = writeln!(out, "{name:<9}{n:>10}");
                out
            }))
        }
        Command::List {
            filter,
            limit,
            after,
        } => {
            let filter = filter.rest.filter(filter.state);
            let page = inbox.jobs(&filter, after.as_deref(), *limit).await?;
            if json {
                let jobs: Vec<Value> = page.jobs.iter().map(summary_json).collect();
                return Ok(format!("{}\n", json!({ "jobs": jobs, "next": page.next })));
            }
            let mut out = String::new();
            for job in &page.jobs {
                let _ = writeln!(
                    out,
                    "{}  {:<8}  {}  {:<12}  {:<20}  {}",
                    job.task_id,
                    job.state,
                    rfc3339(job.received_at),
                    line(&job.layer),
                    line(job.event_type.as_deref().unwrap_or("-")),
                    line(&job.event_id),
                );
            }
            if let Some(next) = &page.next {
                let _ = writeln!(out, "next: --after {next}");
            }
            Ok(out)
        }
        Command::Show { id } => {
            let detail = find(inbox, id).await?;
            if json {
                return Ok(format!("{}\n", detail_json(&detail)));
            }
            Ok(detail_text(&detail))
        }
        Command::Replay { id, dead, filter } => {
            let replayed = if *dead {
                inbox.replay_matching(&filter.filter(None)).await?
            } else {
                replay_one(inbox, id.as_deref().unwrap_or_default()).await?
            };
            if json {
                return Ok(format!("{}\n", json!({ "replayed": replayed })));
            }
            Ok(format!("replayed {replayed} job(s)\n"))
        }
        Command::Purge { before, older_than } => {
            let before = before
                .or_else(|| older_than.and_then(|age| SystemTime::now().checked_sub(age)))
                .unwrap_or(SystemTime::UNIX_EPOCH);
            let purged = inbox.purge_done_before(before).await?;
            if json {
                return Ok(format!(
                    "{}\n",
                    json!({ "purged": purged, "before": rfc3339(before) })
                ));
            }
            Ok(format!(
                "purged {purged} done job(s) finished before {}\n",
                rfc3339(before)
            ))
        }
    }
}

/// Replays the job `id`, or the dead job of the delivery `id`: a delivery received more
/// than once (a replay's copy, another layer) has several jobs, and the dead one is the one
/// to replay, whichever is newest.
async fn replay_one<D: Dialect>(inbox: &Inbox<D>, id: &str) -> Result<u64, Failure> {
    let dead = inbox
        .jobs(
            &JobFilter::default().state(JobState::Dead).event_id(id),
            None,
            1,
        )
        .await?;
    let detail = match dead.jobs.first() {
        Some(job) => inbox
            .job(&job.task_id)
            .await?
            .ok_or_else(|| Failure::NotFound(format!("no job or delivery {id} in this inbox")))?,
        None => find(inbox, id).await?,
    };
    if !inbox.replay(&detail.summary.task_id).await? {
        return Err(Failure::NotFound(format!(
            "the job {} is {}, not dead-lettered: nothing to replay",
            detail.summary.task_id, detail.summary.state
        )));
    }
    Ok(1)
}

/// The job `id`, or the job of the delivery `id`.
async fn find<D: Dialect>(inbox: &Inbox<D>, id: &str) -> Result<JobDetail, Failure> {
    if let Some(detail) = inbox.job(id).await? {
        return Ok(detail);
    }
    let page = inbox
        .jobs(&JobFilter::default().event_id(id), None, 1)
        .await?;
    match page.jobs.first() {
        Some(job) => inbox
            .job(&job.task_id)
            .await?
            .ok_or_else(|| Failure::NotFound(format!("no job {id} in this inbox"))),
        None => Err(Failure::NotFound(format!(
            "no job or delivery {id} in this inbox"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_or_refused() {
        assert_eq!(parse_age("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_age(" 45m "), Ok(Duration::from_secs(2_700)));
        assert_eq!(parse_age("0s"), Ok(Duration::ZERO));
        for wrong in [
            "",
            "d",
            "5",
            "5é",
            "é",
            "+5d",
            "-5d",
            "5 d",
            "5dd",
            "99999999999999999999d",
            "18446744073709551615d",
        ] {
            assert!(parse_age(wrong).is_err(), "{wrong:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_age_is_read_or_refused(text in "\\PC{0,12}") {
            let _ = parse_age(&text);
        }

        #[test]
        fn any_purge_argument_is_a_usage_error_or_accepted(
            text in "\\PC{0,30}",
            flag in proptest::sample::select(vec!["--before", "--older-than"]),
        ) {
            // Parsed as the binary parses it; a refusal is a usage error (exit 2), not a panic.
            let parsed = Cli::try_parse_from(["webhook-inbox", "-d", "x.db", "purge", flag, &text]);
            if let Err(err) = parsed {
                proptest::prop_assert_eq!(err.exit_code(), 2);
            }
        }
    }
}
