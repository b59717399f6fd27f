//! Every built-in scheme through an inbox, with its senders' own vectors where there are
//! some: the job is stored, and none of the sender's secret material is in its row (the
//! body aside, kept as verified), on its console page, or in `webhook-inbox show` (text and
//! JSON). GitLab's token travels in a header, Microsoft Graph's `clientState`, Slack's
//! legacy token and Discord's interaction token in the body.
//!
//! On SQLite, and on PostgreSQL at `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`; without one its trial is reported as ignored,
//! or fails when `CI` is set).
#![cfg(all(
    feature = "cli",
    feature = "console",
    feature = "test-util",
    feature = "ed25519",
    feature = "sendgrid"
))]

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use base64::Engine as _;
use bytes::Bytes;
use common::inbox::unique;
use http::{HeaderName, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde::Deserialize;
use tower::{Layer, ServiceExt};
use tower_webhook::clock::ManualClock;
use tower_webhook::inbox::console::ConsoleAuth;
use tower_webhook::inbox::{Dialect, Inbox, JobFilter, PostgresInbox, SqliteInbox};
use tower_webhook::scheme::{
    HubSpot, Mailgun, MicrosoftGraph, Scheme, SharedToken, Square, StandardWebhooks, Twilio,
};
use tower_webhook::testkit::Delivery;
use tower_webhook::VerifyWebhookLayer;

const CONSOLE_TOKEN: &str = "secrets-test-console-token";

/// A vector of any of the fixture files: the fields each has.
#[derive(Deserialize)]
struct Vector {
    scheme: String,
    secret: String,
    public_key: Option<String>,
    public_url: Option<String>,
    path: Option<String>,
    #[serde(default)]
    timestamp: i64,
    body_base64: String,
    headers: BTreeMap<String, String>,
}

/// One delivery to send: its scheme, the request, the time it was signed at, and the text
/// that must never be shown.
struct Case {
    scheme: Box<dyn Scheme>,
    request: Request<Full<Bytes>>,
    at: Option<i64>,
    secrets: Vec<String>,
    /// Whether the body holds a secret, shown redacted.
    in_body: bool,
}

fn request(path: &str, headers: &BTreeMap<String, String>, body: Bytes) -> Request<Full<Bytes>> {
    let mut request = Request::post(path).body(Full::new(body)).unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    request
}

/// The values of `field` anywhere in the JSON or form body `body`.
fn values_of(body: &[u8], field: &str) -> Vec<String> {
    fn walk(value: &serde_json::Value, field: &str, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (name, inner) in map {
                    match inner {
                        serde_json::Value::String(text) if name == field => out.push(text.clone()),
                        _ => walk(inner, field, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, field, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value) => walk(&value, field, &mut out),
        Err(_) => out.extend(
            form_urlencoded::parse(body)
                .filter(|(name, _)| name == field)
                .map(|(_, value)| value.into_owned()),
        ),
    }
    out
}

fn fixture(name: &str) -> Vec<Vector> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The scheme that verifies `v`: `None` for the vectors this walk leaves out.
fn vector_scheme(v: &Vector) -> Option<Box<dyn Scheme>> {
    Some(match v.scheme.as_str() {
        "standard-webhooks-v1a" => return None,
        "twilio" | "square" | "hubspot" => {
            let url = v.public_url.as_deref().unwrap();
            match v.scheme.as_str() {
                "twilio" => Box::new(Twilio::new(&v.secret, url).unwrap()),
                "square" => Box::new(Square::new(&v.secret, url).unwrap()),
                _ => Box::new(HubSpot::new(&v.secret, url).unwrap()),
            }
        }
        "discord" => {
            Box::new(tower_webhook::scheme::Discord::new(v.public_key.as_deref().unwrap()).unwrap())
        }
        "sendgrid" => Box::new(
            tower_webhook::scheme::SendGrid::new(v.public_key.as_deref().unwrap()).unwrap(),
        ),
        "mailgun" => Box::new(Mailgun::new(&v.secret).unwrap()),
        name => Box::new(common::hmac_scheme(name, &v.secret)),
    })
}

/// Every built-in scheme, from its sender's vectors where the crate has them.
fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for file in [
        "senders_node.json",
        "senders_python.json",
        "senders_hmac.json",
        "senders_linear.json",
        "senders_coinbase.json",
        "senders_url.json",
        "senders_hubspot.json",
        "senders_discord.json",
        "senders_mailgun.json",
        "senders_sendgrid.json",
    ] {
        for v in fixture(file) {
            let body: Bytes = base64::engine::general_purpose::STANDARD
                .decode(&v.body_base64)
                .unwrap()
                .into();
            // Its Ed25519 vectors: the Standard Webhooks case below is signed by the kit.
            let Some(scheme) = vector_scheme(&v) else {
                continue;
            };
            seen.insert(v.scheme.clone());
            let mut secrets = vec![v.secret.clone()];
            // What the body carries of the sender's secrets: Slack's legacy token, a
            // Discord interaction's token.
            for field in scheme.secret_body_fields() {
                secrets.extend(values_of(&body, field));
            }
            let in_body = secrets.len() > 1;
            let path = v.path.as_deref().unwrap_or("/webhooks");
            cases.push(Case {
                request: request(path, &v.headers, body),
                at: Some(v.timestamp),
                secrets,
                in_body,
                scheme,
            });
        }
    }
    assert!(seen.len() >= 24, "{seen:?}");

    let standard = StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let delivery = Delivery::new(r#"{"type":"invoice.paid","data":{}}"#).id(unique("msg"));
    cases.push(Case {
        request: delivery.request(&standard).unwrap(),
        at: None,
        secrets: vec!["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned()],
        in_body: false,
        scheme: Box::new(standard),
    });

    let token = "glpat-secret-token-0123456789";
    let headers = BTreeMap::from([
        ("x-gitlab-token".to_owned(), token.to_owned()),
        ("x-gitlab-event".to_owned(), "Push Hook".to_owned()),
        ("x-gitlab-event-uuid".to_owned(), unique("gitlab")),
        (
            "authorization".to_owned(),
            "Bearer proxy-credential-42".to_owned(),
        ),
        (
            "cookie".to_owned(),
            "session=cookie-credential-42".to_owned(),
        ),
        ("content-type".to_owned(), "application/json".to_owned()),
    ]);
    cases.push(Case {
        request: request(
            "/webhooks",
            &headers,
            Bytes::from_static(br#"{"object_kind":"push"}"#),
        ),
        at: None,
        secrets: vec![
            token.to_owned(),
            "proxy-credential-42".to_owned(),
            "cookie-credential-42".to_owned(),
        ],
        in_body: false,
        scheme: Box::new(SharedToken::gitlab(token).unwrap()),
    });

    let state = "graph-client-state-0123456789";
    let body = format!(
        r#"{{"value":[{{"subscriptionId":"s1","clientState":"{state}","changeType":"created","resource":"Users/1"}},{{"subscriptionId":"s1","clientState":"{state}","changeType":"updated","resource":"Users/2"}}]}}"#
    );
    cases.push(Case {
        request: request("/webhooks", &BTreeMap::new(), Bytes::from(body)),
        at: None,
        secrets: vec![state.to_owned()],
        in_body: true,
        scheme: Box::new(MicrosoftGraph::new(state).unwrap()),
    });
    cases
}

/// What a job's row reads as text, its stored delivery and the columns listings read.
type RowFuture = std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send>>;

/// The text of `response`'s body.
async fn text_of(response: http::Response<axum::body::Body>) -> (StatusCode, String) {
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Sends every case through `inbox`, then looks for the secrets in the row (read with
/// `row`), the console's page and the command line's output.
async fn suite<D: Dialect>(
    inbox: Inbox<D>,
    database: &str,
    queue: &str,
    row: impl Fn(Inbox<D>, String) -> RowFuture,
) {
    let console = inbox
        .console(ConsoleAuth::token(CONSOLE_TOKEN).unwrap())
        .router();
    for case in cases() {
        let name = case.scheme.name();
        let layer_name = unique(name);
        let mut layer = VerifyWebhookLayer::new(case.scheme)
            .with_name(&layer_name)
            .with_inbox(inbox.clone());
        if let Some(at) = case.at {
            layer = layer.with_clock(ManualClock::at_unix(at));
        }
        let service = layer.layer(tower::service_fn(|_: Request<Full<Bytes>>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
        }));
        let response = service.oneshot(case.request).await.unwrap();
        if name == "discord" && response.status() == StatusCode::OK {
            // A PING: the layer's own answer, nothing stored.
            continue;
        }
        assert_eq!(response.status(), StatusCode::ACCEPTED, "{name}");

        let page = inbox
            .jobs(&JobFilter::default().layer(&layer_name), None, 1)
            .await
            .unwrap();
        let task = page.jobs[0].task_id.clone();
        let detail = inbox.job(&task).await.unwrap().unwrap();
        let stored = row(inbox.clone(), task.clone()).await;
        let (status, html) = text_of(
            console
                .clone()
                .oneshot(
                    Request::get(format!("/jobs/{task}"))
                        .header("authorization", format!("Bearer {CONSOLE_TOKEN}"))
                        .body(axum::body::Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{name}: {html}");
        let cli = |json: bool| {
            let mut command = Command::new(env!("CARGO_BIN_EXE_webhook-inbox"));
            command.args(["--database", database, "--queue", queue, "show", &task]);
            if json {
                command.arg("--json");
            }
            let output = command
                .env_remove("WEBHOOK_INBOX_DATABASE")
                .output()
                .unwrap();
            assert!(output.status.success(), "{name}: {output:?}");
            String::from_utf8(output.stdout).unwrap()
        };
        let (text, json) = (cli(false), cli(true));
        for secret in case.secrets.iter().filter(|secret| secret.len() >= 8) {
            for (place, shown) in [
                ("the stored row", &stored),
                ("the console's page", &html),
                ("webhook-inbox show", &text),
                ("webhook-inbox show --json", &json),
            ] {
                assert!(
                    !shown.contains(secret.as_str()),
                    "{name}: {place} shows {secret:?}:\n{shown}"
                );
            }
            for (header, value) in &detail.headers {
                assert!(
                    !value.contains(secret.as_str()),
                    "{name}: {header} is stored"
                );
            }
        }
        if case.in_body {
            for shown in [&html, &text, &json] {
                assert!(shown.contains("redacted"), "{name}: {shown}");
            }
        }
    }
}

fn main() -> std::process::ExitCode {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = common::database_url();
    let reachable = runtime.block_on(common::inbox::postgres_reachable());
    let clean = reachable.is_ok();
    let dir = std::env::temp_dir().join(format!("tower-webhook-secrets-{}", std::process::id()));
    let mut trials = vec![common::trial("sqlite::no_secret_is_stored_or_shown", {
        let dir = dir.clone();
        || async move {
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("inbox.db");
            let inbox = SqliteInbox::open(&path).await.unwrap();
            let database = format!("sqlite://{}", path.display());
            let queue = tower_webhook::inbox::DEFAULT_QUEUE;
            suite(inbox, &database, queue, |inbox, task| {
                Box::pin(async move {
                    use tower_webhook::store::sqlite::sqlx;
                    let (job, metadata): (String, Option<String>) = sqlx::query_as(
                        "SELECT CAST(delivery AS TEXT), event_id || layer \
                         || coalesce(event_type, '') || coalesce(tenant, '') \
                         FROM webhook_inbox_jobs WHERE id = ?",
                    )
                    .bind(task)
                    .fetch_one(inbox.pool())
                    .await
                    .unwrap();
                    format!("{job}{}", metadata.unwrap_or_default())
                })
            })
            .await;
        }
    })];
    trials.extend(common::needing(
        "PostgreSQL",
        "DATABASE_URL",
        &url.clone(),
        reachable,
        vec![common::trial(
            "postgres::no_secret_is_stored_or_shown",
            move || async move {
                let queue = unique("test-queue");
                let inbox = PostgresInbox::connect(&url)
                    .await
                    .unwrap()
                    .with_queue(&queue);
                suite(inbox, &url, &queue, |inbox, task| {
                    Box::pin(async move {
                        use tower_webhook::store::postgres::sqlx;
                        let (row,): (String,) = sqlx::query_as(
                            "SELECT convert_from(delivery, 'UTF8') || event_id || layer \
                             || coalesce(event_type, '') || coalesce(tenant, '') \
                             FROM webhook_inbox_jobs WHERE id = $1",
                        )
                        .bind(task)
                        .fetch_one(inbox.pool())
                        .await
                        .unwrap();
                        row
                    })
                })
                .await;
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
