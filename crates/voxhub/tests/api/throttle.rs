//! Login throttling: after too many failures in the window, logins are refused with 429 and
//! Retry-After before the password is checked.

use crate::support::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use voxhub_core::role::Role;
use voxhub_core::throttle::ThrottlePolicy;
use voxhub_web::WebSettings;

async fn login_from(app: &TestApp, address: &str, username: &str, password: &str) -> Reply {
    app.send(
        app.builder(Method::POST, "", "/api/v1/auth/login")
            .header("X-Forwarded-For", address)
            .json(&json!({"username": username, "password": password})),
    )
    .await
}

#[track_caller]
fn assert_throttled(reply: &Reply) -> (String, u64) {
    let message = assert_error(
        &(reply.status, reply.body.clone()),
        429,
        "too_many_attempts",
    );
    let retry_after: u64 = reply
        .headers
        .get("retry-after")
        .unwrap_or_else(|| panic!("a 429 must carry Retry-After: {:?}", reply.headers))
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in whole seconds");
    assert!(
        (1..=60).contains(&retry_after),
        "Retry-After {retry_after} should be within the one-minute window"
    );
    assert!(
        message.contains("wait") && message.contains("seconds"),
        "{message}"
    );
    assert!(reply.body.get("token").is_none());
    (message, retry_after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_too_many_wrong_passwords_for_one_account_even_the_right_password_is_refused_with_429()
 {
    // Each attempt comes from its own address (through a trusted proxy), so only the
    // per-account limit is in play.
    let settings = WebSettings {
        trust_forwarded_for: true,
        ..WebSettings::default()
    };
    let limit = settings.throttle.max_failures_per_username;
    assert!(
        limit < 20,
        "the 20th wrong password in a minute must be refused at the latest"
    );
    let app = TestApp::spawn_with(settings).await;
    let victim = app.user(Role::Student).await;
    let bystander = app.user(Role::Student).await;

    for i in 0..limit {
        let reply = login_from(
            &app,
            &format!("10.0.0.{i}"),
            &victim.username,
            "guessing wrong again",
        )
        .await;
        assert_error(&reply.pair(), 401, "wrong_credentials");
    }
    let wrong_again = login_from(&app, "10.0.1.1", &victim.username, "guessing wrong again").await;
    let (message, _) = assert_throttled(&wrong_again);
    assert!(message.contains("this account"), "{message}");

    // The right password is refused too: the password is not even checked.
    let right = login_from(&app, "10.0.1.2", &victim.username, PASSWORD).await;
    assert_throttled(&right);
    // The same account with other capitalisation is the same account.
    assert_throttled(
        &login_from(&app, "10.0.1.3", &victim.username.to_uppercase(), PASSWORD).await,
    );

    // Other accounts are not affected.
    let other = login_from(&app, "10.0.1.4", &bystander.username, PASSWORD).await;
    assert_eq!(other.status, StatusCode::OK, "{}", other.body);

    let refused = app.audit("action=auth.login&outcome=failure").await;
    let unchecked: Vec<_> = refused
        .iter()
        .filter(|e| e["detail"].as_str().unwrap().contains("without checking"))
        .collect();
    assert_eq!(
        unchecked.len(),
        3,
        "throttled attempts are audited: {refused:?}"
    );
    assert_eq!(refused.len(), limit + 3);
    assert_eq!(unchecked[0]["source"], "10.0.1.3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_usernames_from_one_address_are_refused_with_429_once_the_address_limit_is_hit() {
    let app = TestApp::spawn().await;
    let limit = ThrottlePolicy::default().max_failures_per_address;
    let student = app.user(Role::Student).await;
    // X-Forwarded-For is not trusted by default, so changing it does not escape the limit.
    for i in 0..limit {
        let reply = login_from(
            &app,
            &format!("10.9.9.{i}"),
            &format!("guess{i}"),
            "a wrong password",
        )
        .await;
        assert_error(&reply.pair(), 401, "wrong_credentials");
    }
    let reply = login_from(&app, "10.9.9.200", "someone-else", "a wrong password").await;
    let (message, _) = assert_throttled(&reply);
    assert!(message.contains("network address"), "{message}");

    // An account that never failed is refused from this address too, right password or not.
    let right = app.try_login(&student.username, PASSWORD).await;
    assert_throttled(&right);

    let refused = app.audit("action=auth.login&outcome=failure").await;
    assert!(
        refused.iter().all(|e| e["source"] == "127.0.0.1"),
        "the real address is recorded: {refused:?}"
    );
    assert_eq!(refused.len(), limit + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_behind_a_trusted_proxy_cannot_escape_the_address_limit_by_forging_x_forwarded_for()
 {
    let settings = WebSettings {
        trust_forwarded_for: true,
        ..WebSettings::default()
    };
    let limit = settings.throttle.max_failures_per_address;
    let app = TestApp::spawn_with(settings).await;
    // The proxy appends the real client address (203.0.113.7) to whatever the client sent.
    for i in 0..limit {
        let forwarded = format!("198.51.100.{i}, 203.0.113.7");
        let reply = login_from(&app, &forwarded, &format!("guess{i}"), "a wrong password").await;
        assert_error(&reply.pair(), 401, "wrong_credentials");
    }
    let reply = login_from(
        &app,
        "198.51.100.250, 203.0.113.7",
        "another-guess",
        "a wrong password",
    )
    .await;
    assert_throttled(&reply);
    let failures = app.audit("action=auth.login").await;
    assert!(
        failures.iter().all(|e| e["source"] == "203.0.113.7"),
        "the audit log records the real address: {failures:?}"
    );
}
