//! The inbox's console in a real browser (headless Chromium through ChromeDriver, Debian's
//! `chromium` and `chromium-driver`), on an SQLite inbox nested in an axum app at `/inbox`:
//! sign in, the overview, a search by event id, a dead-lettered delivery whose `<script>` is
//! shown and not run, a refused cross-site replay, then a replay that changes its state.
//! Over plain HTTP: requests without the token and state changes without the CSRF token are
//! refused, and every answer carries the security headers.
//!
//! Without the browser the trial is reported as ignored, or fails when `CI` is set (`.ci/run`
//! installs it). Screenshots go to `target/console-screenshots/`.
#![cfg(all(feature = "console", feature = "test-util"))]

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;

use bytes::Bytes;
use common::inbox::{no_wait, send_five, unique, work_five, Five};
use common::webdriver::Browser;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use tower_webhook::inbox::console::ConsoleAuth;
use tower_webhook::inbox::{JobFilter, JobState, SqliteInbox};

const TOKEN: &str = "console-test-token-0123456789";

/// Serves `app` on a port of its own.
async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A page of another site, whose button posts a replay of `task` to the console at `console`.
async fn attacker(console: SocketAddr, task: &str) -> SocketAddr {
    let page = format!(
        "<!doctype html><title>free prizes</title>\
         <form method=\"post\" action=\"http://{console}/inbox/jobs/{task}/replay\">\
         <input type=\"hidden\" name=\"csrf\" value=\"guessed\">\
         <button id=\"go\" type=\"submit\">Claim</button></form>"
    );
    serve(axum::Router::new().route(
        "/",
        axum::routing::get(move || async move { axum::response::Html(page) }),
    ))
    .await
}

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap, String) {
    send(addr, Method::GET, path, headers, "").await
}

async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &'static str,
) -> (StatusCode, http::HeaderMap, String) {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    let (status, headers, body) = common::http(addr, request).await.unwrap();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// The job of the delivery `event_id`.
async fn task_of(inbox: &SqliteInbox, event_id: &str) -> String {
    let page = inbox
        .jobs(&JobFilter::default().event_id(event_id), None, 1)
        .await
        .unwrap();
    page.jobs[0].task_id.clone()
}

async fn the_console_in_a_browser() {
    let dir = std::env::temp_dir().join(format!("tower-webhook-console-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let inbox = SqliteInbox::open(dir.join(format!("{}.db", unique("console"))))
        .await
        .unwrap()
        .with_retry(no_wait());
    let Five { a2, a3, b2, .. } = send_five(&inbox).await;
    work_five(&inbox).await;
    // The dead letter is a3; b2's body carries a script.
    let dead = task_of(&inbox, &a3).await;
    let scripted = task_of(&inbox, &b2).await;
    let console = inbox
        .console(ConsoleAuth::token(TOKEN).unwrap())
        .with_stats("github", tower_webhook::Stats::default())
        .router();
    let addr = serve(axum::Router::new().nest("/inbox", console)).await;
    let site = format!("http://{addr}/inbox");

    over_http(addr, &dead).await;

    let browser = Browser::start().await;
    // Not signed in: the sign-in form, nothing of the inbox.
    browser.goto(&format!("{site}/jobs")).await;
    assert!(browser.title().await.starts_with("Sign in"));
    assert!(!browser.source().await.contains(&a3));
    browser.type_into("#token", "not-the-token-at-all").await;
    browser.click("#sign-in").await;
    // The page a click brings is waited for through an element only it has.
    assert!(browser.text("p.error").await.contains("not the console"));
    browser.type_into("#token", TOKEN).await;
    browser.click("#sign-in").await;

    // The overview.
    assert!(browser.text("#count-dead").await.contains('1'));
    assert!(browser.title().await.starts_with("Overview"));
    assert!(browser.text("#count-done").await.contains('4'));
    std::fs::write(
        screenshots().join("overview.png"),
        browser.screenshot().await,
    )
    .unwrap();

    // A delivery with a script in its body: shown, not run.
    browser.goto(&format!("{site}/jobs/{scripted}")).await;
    assert!(browser
        .text("#body")
        .await
        .contains("<script>document.title='pwned'</script>"));
    assert!(
        browser.title().await.starts_with("Delivery"),
        "the script ran"
    );

    // A cross-site replay, from another site's page with the session cookie in the
    // browser: refused, and the job is still dead.
    let evil = attacker(addr, &dead).await;
    browser
        .goto(&format!("http://localhost:{}/", evil.port()))
        .await;
    browser.click("#go").await;
    let refused = browser.text("main h1").await;
    assert!(refused == "Sign in" || refused == "Refused", "{refused}");
    assert_eq!(
        inbox.job(&dead).await.unwrap().unwrap().summary.state,
        JobState::Dead
    );

    // Search by the event id a customer quotes, open the dead letter, replay it.
    browser.goto(&site).await;
    browser.type_into("#search", &a3).await;
    browser.click("#search-go").await;
    assert!(browser.text("#jobs").await.contains(&a3));
    assert!(!browser.text("#jobs").await.contains(&a2));
    browser.click("#jobs td.mono a").await;
    assert_eq!(browser.text("#event-id").await, a3);
    assert!(browser.text("#state").await.contains("dead"));
    assert!(browser
        .text("#attempts")
        .await
        .contains("the handler refused"));
    std::fs::write(
        screenshots().join("dead-letter.png"),
        browser.screenshot().await,
    )
    .unwrap();
    browser.click("#replay").await;
    assert!(browser
        .text("form.confirm")
        .await
        .contains("Queue the dead-lettered job"));
    browser.click("#confirm").await;
    assert!(browser.text("#result").await.contains("queued again"));
    browser.goto(&format!("{site}/jobs/{dead}")).await;
    assert!(browser.text("#state").await.contains("queued"));
    assert_eq!(
        inbox.job(&dead).await.unwrap().unwrap().summary.state,
        JobState::Queued
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// What a client without the browser sees.
async fn over_http(addr: SocketAddr, dead: &str) {
    let bearer = format!("Bearer {TOKEN}");
    // No token, a wrong one: refused, with nothing of the inbox.
    for headers in [
        &[][..],
        &[("authorization", "Bearer wrong-token-0123456789")],
    ] {
        let (status, answer_headers, body) = get(addr, "/inbox/jobs?state=dead", headers).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(!body.contains(dead));
        assert_eq!(answer_headers["x-frame-options"], "DENY");
    }
    // The overview, twice: the second reads only the open buckets of its charts.
    for _ in 0..2 {
        let (status, _, body) = get(addr, "/inbox", &[("authorization", &bearer)]).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("Accepted <strong>5</strong>"), "{body}");
        assert!(body.contains("Dead-lettered <strong>1</strong>"), "{body}");
    }
    let (status, headers, body) = get(
        addr,
        "/inbox/jobs?state=dead",
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(dead));
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["cache-control"], "no-store");
    // State changes need the CSRF token of the page, and the same origin.
    let path = format!("/inbox/jobs/{dead}/replay");
    let form = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    let (status, _, _) = send(addr, Method::POST, &path, &form, "csrf=guessed").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, _, page) = get(addr, &path, &[("authorization", &bearer)]).await;
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let body: &'static str = Box::leak(format!("csrf={csrf}").into_boxed_str());
    let mut cross = form.to_vec();
    cross.push(("origin", "http://evil.example"));
    let (status, _, _) = send(addr, Method::POST, &path, &cross, body).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a cross-origin POST");
    let mut cross = form.to_vec();
    cross.push(("sec-fetch-site", "cross-site"));
    let (status, _, _) = send(addr, Method::POST, &path, &cross, body).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a cross-site POST");
    // Unknown pages and jobs: 404, still with the headers.
    let (status, headers, _) = get(
        addr,
        "/inbox/jobs/no-such-job",
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers["x-frame-options"], "DENY");
    let (status, _, _) = get(
        addr,
        "/inbox/jobs?state=finished",
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

fn main() -> std::process::ExitCode {
    let trials = vec![common::trial("the_console_in_a_browser", || async {
        the_console_in_a_browser().await;
    })];
    common::run(common::needing(
        "Chromium",
        "CHROMIUM",
        &common::webdriver::chromium(),
        common::webdriver::installed(),
        trials,
    ))
}
