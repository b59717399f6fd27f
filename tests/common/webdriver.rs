//! A real browser for the tests: Chromium, driven through ChromeDriver over the W3C
//! WebDriver protocol (a few JSON requests; no client crate for them).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

/// Where Debian's packages put them; `CHROMIUM` and `CHROMEDRIVER` say otherwise.
pub fn chromium() -> String {
    super::env_or("CHROMIUM", "/usr/bin/chromium")
}

pub fn chromedriver() -> String {
    super::env_or("CHROMEDRIVER", "/usr/bin/chromedriver")
}

/// Whether the browser and its driver are installed: `Err` says which is missing.
pub fn installed() -> Result<(), String> {
    for path in [chromium(), chromedriver()] {
        if !std::path::Path::new(&path).exists() {
            return Err(format!(
                "{path} is missing (apt-get install -y chromium chromium-driver)"
            ));
        }
    }
    Ok(())
}

/// A ChromeDriver process and one headless Chromium session; both end when dropped.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    pub async fn start() -> Self {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let driver = Command::new(chromedriver())
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut ready = false;
        for _ in 0..100 {
            if let Ok((StatusCode::OK, value)) = call(addr, Method::GET, "/status", None).await {
                if value["value"]["ready"] == true {
                    ready = true;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ready, "chromedriver did not come up on port {port}");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1000",
                         "--no-first-run", "--disable-extensions"]
            }
        }}});
        let (status, value) = call(addr, Method::POST, "/session", Some(capabilities))
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK, "a session: {value}");
        let session = value["value"]["sessionId"].as_str().unwrap().to_owned();
        let browser = Self {
            driver,
            addr,
            session,
        };
        // An element a click's navigation brings is waited for, up to 10 s.
        browser
            .command(
                Method::POST,
                "/timeouts",
                Some(json!({ "implicit": 10_000 })),
            )
            .await;
        browser
    }

    async fn command(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let (status, value) = call(self.addr, method, &path, body).await.unwrap();
        assert_eq!(status, StatusCode::OK, "{path}: {value}");
        value["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.command(Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    pub async fn url(&self) -> String {
        self.string("/url").await
    }

    pub async fn title(&self) -> String {
        self.string("/title").await
    }

    pub async fn source(&self) -> String {
        self.string("/source").await
    }

    /// The element `css` selects: its id, or `None`.
    pub async fn find(&self, css: &str) -> Option<String> {
        let path = format!("/session/{}/element", self.session);
        let body = json!({ "using": "css selector", "value": css });
        let (status, value) = call(self.addr, Method::POST, &path, Some(body))
            .await
            .unwrap();
        (status == StatusCode::OK).then(|| value["value"][ELEMENT].as_str().unwrap().to_owned())
    }

    async fn element(&self, css: &str) -> String {
        match self.find(css).await {
            Some(id) => id,
            None => panic!("no {css} on {}:\n{}", self.url().await, self.source().await),
        }
    }

    pub async fn text(&self, css: &str) -> String {
        let id = self.element(css).await;
        self.string(&format!("/element/{id}/text")).await
    }

    /// The text a `GET` of `path` in the session answers.
    async fn string(&self, path: &str) -> String {
        let value = self.command(Method::GET, path, None).await;
        value.as_str().unwrap().to_owned()
    }

    pub async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.command(
            Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Clears the field `css` selects (a browser may fill in what was typed before), then
    /// types `text` into it.
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.command(
            Method::POST,
            &format!("/element/{id}/clear"),
            Some(json!({})),
        )
        .await;
        self.command(
            Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// The page as a PNG.
    pub async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let png = self.command(Method::GET, "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// One WebDriver request: its status and JSON answer.
async fn call(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<(StatusCode, Value), String> {
    let body = body.map_or_else(Bytes::new, |body| Bytes::from(body.to_string()));
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(Full::new(body))
        .unwrap();
    let (status, _, body) = super::http(addr, request).await?;
    let value = serde_json::from_slice(&body).map_err(|err| err.to_string())?;
    Ok((status, value))
}
