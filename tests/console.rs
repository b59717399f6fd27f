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
use common::inbox::{no_wait, send_five, send_github, unique, work_five, work_until, Five};
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
    body: impl Into<String>,
) -> (StatusCode, http::HeaderMap, String) {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(Bytes::from(body.into()))).unwrap();
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
    let body = format!("csrf={csrf}");
    let body = body.as_str();
    let mut cross = form.to_vec();
    cross.push(("origin", "http://evil.example"));
    let (status, _, _) = send(addr, Method::POST, &path, &cross, body.to_owned()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a cross-origin POST");
    let mut cross = form.to_vec();
    cross.push(("sec-fetch-site", "cross-site"));
    let (status, _, _) = send(addr, Method::POST, &path, &cross, body.to_owned()).await;
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

/// The CSRF token of the first form of `page`.
fn csrf_of(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no CSRF token in {page}"))
        .to_owned()
}

/// The value `name=` of the `Set-Cookie` headers of `headers`, with its attributes.
fn set_cookie(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(http::header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

/// Refusals, filters, sessions and HTTP/2, without a browser: the console's actions as a
/// script or a proxy would send them. One server and one inbox, its steps in order.
#[allow(clippy::too_many_lines)]
async fn the_console_over_http1_and_http2() {
    let dir =
        std::env::temp_dir().join(format!("tower-webhook-console-http-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let inbox = SqliteInbox::open(dir.join(format!("{}.db", unique("console"))))
        .await
        .unwrap()
        .with_retry(no_wait());
    // A body over the 64 KiB a page shows: cut as received, never parsed whole.
    let big = format!(r#"{{"n":0,"pad":[{}1]}}"#, "1,".repeat(60_000));
    let big = send_github(&inbox, "github", "push", &big).await;
    let first = send_github(&inbox, "github", "push", r#"{"n":1,"fail":true}"#).await;
    let second = send_github(&inbox, "github", "push", r#"{"n":2,"fail":true}"#).await;
    let third = send_github(&inbox, "github", "push", r#"{"n":3,"fail":true}"#).await;
    work_until(&inbox, 1, 3).await;
    let state = |id: String| {
        let inbox = inbox.clone();
        async move {
            let task = task_of(&inbox, &id).await;
            inbox.job(&task).await.unwrap().unwrap().summary.state
        }
    };
    // A token read from a file, its newline and all.
    let console = inbox.console(ConsoleAuth::token(format!("{TOKEN}\n")).unwrap());
    let own = inbox.console(ConsoleAuth::behind_my_own_auth());
    let app = axum::Router::new()
        .nest("/inbox", console.router())
        .nest("/own", own.router());
    let addr = serve(app).await;
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("authorization", bearer.as_str())];
    let form = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];

    let big_task = task_of(&inbox, &big).await;
    let (status, _, page) = get(addr, &format!("/inbox/jobs/{big_task}"), &auth).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("id=\"body-cut\""), "the cut is said");
    let shown = page.split("<pre id=\"body\">").nth(1).unwrap();
    let shown = shown.split("</pre>").next().unwrap();
    assert!(
        shown.starts_with(r"{&quot;n&quot;:0,&quot;pad&quot;:[1,1,"),
        "as received: {}",
        &shown[..80]
    );
    assert!(shown.len() <= 64 * 1024 * 6, "at most 64 KiB, escaped");

    // Every refused action is a 403, whatever its body: none, an empty form, no token.
    for path in [
        "/inbox/replay".to_owned(),
        format!("/inbox/jobs/{}/replay", task_of(&inbox, &first).await),
        "/inbox/purge".to_owned(),
        "/inbox/logout".to_owned(),
    ] {
        for (headers, body) in [
            (&auth[..], ""),
            (&form[..], ""),
            (&form[..], "state=dead"),
            (&auth[..], "csrf=x"),
        ] {
            let (status, _, _) = send(addr, Method::POST, &path, headers, body).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path} {headers:?} {body:?}");
        }
    }

    // A replay by filter takes its filter from the form it confirmed, and only that.
    let (_, _, page) = get(
        addr,
        &format!("/inbox/replay?state=dead&event_id={first}"),
        &auth,
    )
    .await;
    let csrf = csrf_of(&page);
    let in_query = format!("/inbox/replay?state=dead&event_id={first}");
    let (status, _, body) =
        send(addr, Method::POST, &in_query, &form, format!("csrf={csrf}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("form"), "{body}");
    let (status, _, body) = send(
        addr,
        Method::POST,
        "/inbox/replay",
        &form,
        format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "no filter, no all=yes: {body}"
    );
    for id in [&first, &second, &third] {
        assert_eq!(
            state(id.clone()).await,
            JobState::Dead,
            "nothing was replayed"
        );
    }
    let (status, _, body) = send(
        addr,
        Method::POST,
        "/inbox/replay",
        &form,
        format!("csrf={csrf}&state=dead&event_id={first}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("Replayed 1 "), "{body}");
    assert_eq!(state(first.clone()).await, JobState::Queued);
    assert_eq!(state(second.clone()).await, JobState::Dead);
    // The confirm page of an empty filter says so, and posts it.
    let (_, _, page) = get(addr, "/inbox/replay", &auth).await;
    assert!(page.contains("name=\"all\" value=\"yes\""), "{page}");

    // HTTP/2: no Host header, the authority in the URI. The same-origin check reads it.
    let h2 = |method: Method, path: &str, origin: &str, body: String| {
        Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .header("authorization", bearer.as_str())
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", origin)
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    let replay_second = format!("/inbox/jobs/{}/replay", task_of(&inbox, &second).await);
    let request = h2(
        Method::POST,
        &replay_second,
        "http://evil.example",
        format!("csrf={csrf}"),
    );
    let (status, _, _) = common::http2(addr, request).await.unwrap();
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a cross-origin POST over HTTP/2"
    );
    let request = h2(
        Method::POST,
        &replay_second,
        &format!("http://{addr}"),
        format!("csrf={csrf}"),
    );
    let (status, _, body) = common::http2(addr, request).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(state(second.clone()).await, JobState::Queued);
    let login = h2(
        Method::POST,
        "/inbox/login",
        &format!("http://{addr}"),
        format!("token={TOKEN}"),
    );
    let (status, headers, _) = common::http2(addr, login).await.unwrap();
    assert_eq!(status, StatusCode::SEE_OTHER, "a sign-in over HTTP/2");
    assert!(set_cookie(&headers, "tower_webhook_console").is_some());

    // Sessions: an expiry in the cookie, and a sign-out that revokes it.
    let origin = format!("http://{addr}");
    let (status, headers, _) = send(
        addr,
        Method::POST,
        "/inbox/login",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("origin", &origin),
        ],
        format!("token={TOKEN}"),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = set_cookie(&headers, "tower_webhook_console").unwrap();
    assert!(
        cookie.contains("Max-Age=28800") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_owned();
    let (status, _, page) = get(addr, "/inbox", &[("cookie", &session)]).await;
    assert_eq!(status, StatusCode::OK);
    let session_csrf = csrf_of(&page);
    assert_ne!(session_csrf, csrf, "a session's CSRF token is its own");
    let (status, _, _) = send(
        addr,
        Method::POST,
        "/inbox/logout",
        &[
            ("cookie", &session),
            ("content-type", "application/x-www-form-urlencoded"),
            ("origin", &origin),
        ],
        format!("csrf={session_csrf}"),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, page) = get(addr, "/inbox", &[("cookie", &session)]).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a signed-out session: {page}"
    );

    // Behind your own auth: CSRF tokens bound to a cookie of each browser's own.
    let (status, headers, page) = get(addr, "/own/purge?before=2000-01-01", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let browser = set_cookie(&headers, "tower_webhook_console_browser").unwrap();
    assert!(
        browser.contains("HttpOnly") && browser.contains("Path=/own"),
        "{browser}"
    );
    let browser = browser.split(';').next().unwrap().to_owned();
    let own_csrf = csrf_of(&page);
    let purge = |cookie: Option<String>| {
        let own_csrf = own_csrf.clone();
        async move {
            let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
            if let Some(cookie) = &cookie {
                headers.push(("cookie", cookie.as_str()));
            }
            let body = format!("csrf={own_csrf}&before=2000-01-01");
            send(addr, Method::POST, "/own/purge", &headers, body)
                .await
                .0
        }
    };
    assert_eq!(
        purge(None).await,
        StatusCode::FORBIDDEN,
        "no browser cookie"
    );
    let other = "tower_webhook_console_browser=another-browser".to_owned();
    assert_eq!(
        purge(Some(other)).await,
        StatusCode::FORBIDDEN,
        "another browser"
    );
    assert_eq!(purge(Some(browser)).await, StatusCode::OK);
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() -> std::process::ExitCode {
    let mut trials = vec![common::trial(
        "the_console_over_http1_and_http2",
        || async {
            the_console_over_http1_and_http2().await;
        },
    )];
    trials.extend(common::needing(
        "Chromium",
        "CHROMIUM",
        &common::webdriver::chromium(),
        common::webdriver::installed(),
        vec![common::trial("the_console_in_a_browser", || async {
            the_console_in_a_browser().await;
        })],
    ));
    common::run(trials)
}
