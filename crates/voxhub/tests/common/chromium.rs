//! Headless Chromium (Debian's `chromium` and `chromium-driver`) for the tests that drive the
//! web UI: starting chromedriver on a free loopback port, one browser session per person,
//! logging in through the login page, filling and submitting forms, and screenshots kept
//! under the target folder for a person to look at.
//!
//! Where chromedriver is missing a test says so loudly and skips, except under CI (`CI`
//! set), where a missing browser is a failure.

use super::KillOnDrop;
use fantoccini::{Client, ClientBuilder, Locator};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Whether Chromium and chromedriver are installed; without them, a loud note (and under
/// CI a failure, because `.ci/run` installs them).
pub fn available(test: &str) -> bool {
    if std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: chromium and chromium-driver are required under CI; .ci/run installs them");
    }
    eprintln!(
        "\n*** SKIPPED {test}: {CHROMEDRIVER} or {CHROMIUM} is missing. Install them with `apt-get install chromium chromium-driver`. ***\n"
    );
    false
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts chromedriver on a free loopback port and waits until it listens.
pub fn start_chromedriver() -> (KillOnDrop, u16) {
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not listen within 20 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (KillOnDrop(child), port)
}

/// A headless Chromium session with its own profile folder (its own cookies).
pub async fn browser(port: u16, profile: &std::path::Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-quic", "--no-first-run", "--window-size=1280,900",
                format!("--user-data-dir={}", profile.display()),
            ]
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a Chromium session starts")
}

/// Types into the field with this id, replacing what was there.
pub async fn fill(client: &Client, id: &str, value: &str) {
    let field = client
        .find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("field #{id}: {e}"));
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

/// Sets a field's value directly (dates, selects).
pub async fn set_value(client: &Client, id: &str, value: &str) {
    client
        .execute(
            "document.getElementById(arguments[0]).value = arguments[1];",
            vec![id.into(), value.into()],
        )
        .await
        .unwrap();
}

/// Waits until an element matching `css` is on the page; screenshots and fails otherwise.
pub async fn wait_for(client: &Client, css: &str, seconds: u64, what: &str) {
    if let Err(error) = client
        .wait()
        .at_most(Duration::from_secs(seconds))
        .for_element(Locator::Css(css))
        .await
    {
        screenshot(client, &format!("failed-{}", what.replace(' ', "-"))).await;
        let url = client.current_url().await.map(|u| u.to_string());
        panic!("{what}: no {css} appeared within {seconds} s on {url:?}: {error}");
    }
}

/// Submits a form and waits until the page that answers it shows `expect` (a CSS selector).
pub async fn submit(client: &Client, form_css: &str, expect: &str) {
    client
        .find(Locator::Css(&format!("{form_css} button[type=submit]")))
        .await
        .unwrap_or_else(|e| panic!("the submit button of {form_css}: {e}"))
        .click()
        .await
        .unwrap();
    wait_for(client, expect, 30, &format!("after submitting {form_css}")).await;
}

/// Logs in through the login page, starting from `path` (which sends a signed-out visitor
/// to the login page and back), and waits for `expect`.
pub async fn log_in(
    client: &Client,
    url: &str,
    path: &str,
    username: &str,
    password: &str,
    expect: &str,
) {
    client.goto(&format!("{url}{path}")).await.unwrap();
    fill(client, "username", username).await;
    fill(client, "password", password).await;
    submit(client, "form[action='/login']", expect).await;
}

/// The text of the element with this id.
pub async fn text_of(client: &Client, id: &str) -> String {
    client
        .find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("#{id}: {e}"))
        .text()
        .await
        .unwrap()
}

/// Saves a screenshot as `<target tmp>/screenshots/NAME.png`.
pub async fn screenshot(client: &Client, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    if let Ok(png) = client.screenshot().await {
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}
