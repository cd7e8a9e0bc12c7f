//! The browser the console's tests drive: a headless Chromium on a fresh
//! profile, through its own chromedriver, with the page's log read after
//! every step.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// How long the page may take to show what it must.
pub(crate) const WAIT: Duration = Duration::from_secs(30);

/// chromedriver's (non-W3C, long supported) browser log endpoint.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(json!({"type": "browser"}).to_string()))
    }
}

/// A headless Chromium on a fresh profile, driven by its own chromedriver.
pub(crate) struct Browser {
    pub(crate) client: Client,
    base: String,
    driver: std::process::Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    /// Stops chromedriver and every browser process it started: they share
    /// chromedriver's own process group, and each carries this browser's
    /// profile folder on its command line (a renderer that left the group
    /// still does). Nothing outlives the test.
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &group])
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let profile = self._profile.path().display().to_string();
        let _ = std::process::Command::new("pkill")
            .args(["-KILL", "-f", &profile])
            .status();
    }
}

fn chromium() -> String {
    std::env::var("CREDITGATE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

fn screenshot_dir() -> PathBuf {
    // target/<profile> -> target/screenshots/console
    let dir = creditgate_e2e::plugin_dir()
        .parent()
        .expect("target")
        .join("screenshots")
        .join("console");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Browser {
    pub(crate) async fn open(base: String) -> Browser {
        assert!(
            std::path::Path::new(&chromium()).is_file(),
            "{} is missing: apt-get install -y chromium chromium-driver",
            chromium()
        );
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let driver = std::process::Command::new(
            std::env::var("CREDITGATE_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into()),
        )
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        // A process group of its own, which the browser joins: one kill ends both.
        .process_group(0)
        .spawn()
        .expect("chromedriver (apt-get install -y chromium-driver)");
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium(),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage",
                    "--window-size=1280,900", "--lang=en-US",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        let deadline = Instant::now() + WAIT;
        let client = loop {
            let mut builder = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
            builder.capabilities(caps.clone());
            match builder.connect(&format!("http://127.0.0.1:{port}")).await {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("no WebDriver session: {e}"),
            }
        };
        Browser {
            client,
            base,
            driver,
            _profile: profile,
        }
    }

    pub(crate) async fn goto(&self, path: &str) {
        self.client.goto(&format!("{}{path}", self.base)).await.unwrap();
    }

    /// Fails the test with every error the page logged since the last call.
    pub(crate) async fn assert_no_errors(&self, step: &str) {
        let log = self.client.issue_cmd(BrowserLog).await.expect("browser log");
        let errors: Vec<String> = log
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert!(errors.is_empty(), "the page logged errors ({step}): {errors:#?}");
    }

    pub(crate) async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("`{css}` never appeared: {e}"))
    }

    /// Waits until the text of `css` satisfies `ok`; returns it.
    pub(crate) async fn wait_text(&self, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        let mut last = String::new();
        loop {
            if let Ok(el) = self.client.find(Locator::Css(css)).await
                && let Ok(text) = el.text().await
            {
                if ok(&text) {
                    return text;
                }
                last = text;
            }
            assert!(Instant::now() < deadline, "`{css}` never showed {what}; last: {last:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until a script returns true.
    pub(crate) async fn wait_until(&self, what: &str, js: &str) {
        let deadline = Instant::now() + WAIT;
        while self.script(js).await != json!(true) {
            assert!(Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) async fn wait_gone(&self, css: &str) {
        let deadline = Instant::now() + WAIT;
        while self.client.find(Locator::Css(css)).await.is_ok() {
            assert!(Instant::now() < deadline, "`{css}` never went away");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    pub(crate) async fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        el.clear().await.unwrap();
        el.send_keys(text).await.unwrap();
    }

    pub(crate) async fn select(&self, css: &str, value: &str) {
        let el = self.find(css).await;
        // Options may arrive after the select: wait for this one.
        self.find(&format!("{css} option[value=\"{value}\"]")).await;
        el.select_by_value(value).await.unwrap();
    }

    pub(crate) async fn value_of(&self, css: &str) -> String {
        self.find(css).await.prop("value").await.unwrap().unwrap_or_default()
    }

    pub(crate) async fn script(&self, js: &str) -> Value {
        self.client.execute(js, vec![]).await.unwrap()
    }

    /// A screenshot of the viewport, desktop width (1280) or phone (360).
    pub(crate) async fn shot(&self, name: &str) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
    }

    pub(crate) async fn phone_shot(&self, name: &str) {
        self.phone_shot_at(name, None).await;
    }

    /// At 360 px, with `css` scrolled into view when given.
    pub(crate) async fn phone_shot_at(&self, name: &str, css: Option<&str>) {
        self.client.set_window_size(360, 780).await.unwrap();
        if let Some(css) = css {
            self.script(&format!(
                "document.querySelector({css:?}).scrollIntoView({{block: 'end'}}); return true"
            ))
            .await;
        }
        self.shot(name).await;
        let overflow = self
            .script("return document.documentElement.scrollWidth > document.documentElement.clientWidth + 1")
            .await;
        assert_eq!(overflow, json!(false), "{name}: the page scrolls sideways at 360 px");
        self.client.set_window_size(1280, 900).await.unwrap();
        self.script("window.scrollTo(0, 0); return true").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    /// Opens a view from the navigation, as a user does (no reload).
    pub(crate) async fn open_view(&self, route: &str) {
        self.click(&format!("nav a[data-route=\"{route}\"]")).await;
        self.find(&format!("section[data-view=\"{route}\"]")).await;
    }

    /// Signs in through the development form.
    pub(crate) async fn sign_in(&self, user: &str, org: &str, role: &str, name: &str) {
        self.goto("/").await;
        self.type_into("input[name=sub]", user).await;
        self.type_into("input[name=org]", org).await;
        self.select("select[name=role]", role).await;
        self.type_into("input[name=name]", name).await;
        self.click("form button[type=submit]").await;
        self.find("section[data-view=wallet]").await;
        // Live: the subscriptions are up.
        self.wait_text("#live", "Live", |t| t == "Live").await;
    }
}

/// Credits as the console shows them: "1234.5" -> "1,234.5".
pub(crate) fn shown(credits: &str) -> String {
    let (whole, fraction) = credits.split_once('.').map_or((credits, None), |(w, f)| (w, Some(f)));
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match fraction {
        Some(f) => format!("{grouped}.{f}"),
        None => grouped,
    }
}
