//! Personal API tokens: the secret is shown once, tokens work until revoked, and only their
//! owner (or an admin) can see or revoke them.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use voxhub_core::role::Role;

async fn new_token(app: &TestApp, user: &TestUser, name: &str) -> (i64, String) {
    let (status, created) = app
        .post(
            &user.token,
            "/api/v1/tokens",
            json!({"name": name, "expires_in": "30d"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    (
        created["token"]["id"].as_i64().unwrap(),
        created["secret"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_token_is_shown_once_and_works_as_a_bearer_token() {
    let app = TestApp::spawn().await;
    let student = app.user(Role::Student).await;
    let (status, created) = app
        .post(
            &student.token,
            "/api/v1/tokens",
            json!({"name": "grading script"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["secret"].as_str().unwrap();
    assert!(secret.starts_with("vxh_") && secret.len() > 40, "{secret}");
    let token = &created["token"];
    assert_eq!(token["name"], "grading script");
    assert_eq!(token["kind"], "api");
    assert_eq!(token["user_id"], student.id);
    assert!(
        secret.starts_with(token["hint"].as_str().unwrap()),
        "the hint is the start of the secret"
    );
    assert!(
        token["hint"].as_str().unwrap().len() < 16,
        "the hint must not give the secret away"
    );
    let expires = time::OffsetDateTime::parse(
        token["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let days = (expires - time::OffsetDateTime::now_utc()).whole_days();
    assert!(
        (89..=90).contains(&days),
        "default expiry is 90 days, got {days}"
    );

    let me = app.get_ok(secret, "/api/v1/me").await;
    assert_eq!(me["user"]["id"], student.id);

    let list = app.get_ok(&student.token, "/api/v1/tokens").await;
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "sessions are not listed: {list}"
    );
    assert_eq!(list[0]["id"], token["id"]);
    assert!(list[0].get("secret").is_none(), "{list}");
    assert!(
        !list.to_string().contains(&secret[8..]),
        "the secret is never shown again"
    );
    assert!(
        list[0]["last_used_at"].is_string(),
        "last use is recorded: {list}"
    );

    let created = app.audit("action=token.create").await;
    assert_eq!(created.len(), 1);
    assert!(
        !created[0].to_string().contains(&secret[8..]),
        "the secret is not in the audit log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_stops_working_at_once() {
    let app = TestApp::spawn().await;
    let student = app.user(Role::Student).await;
    let (id, secret) = new_token(&app, &student, "laptop").await;
    app.get_ok(&secret, "/api/v1/me").await;
    let (status, revoked) = app
        .delete(&student.token, &format!("/api/v1/tokens/{id}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    let message = assert_error(&app.get(&secret, "/api/v1/me").await, 401, "token_revoked");
    assert!(message.contains("revoked"), "{message}");
    // Revoking twice is harmless and keeps the first revocation time.
    let (status, again) = app
        .delete(&student.token, &format!("/api/v1/tokens/{id}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["revoked_at"], revoked["revoked_at"]);
    let list = app.get_ok(&student.token, "/api/v1/tokens").await;
    assert!(
        list[0]["revoked_at"].is_string(),
        "revoked tokens stay listed: {list}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_cannot_list_or_revoke_my_tokens() {
    let app = TestApp::spawn().await;
    let owner = app.user(Role::Student).await;
    let (id, secret) = new_token(&app, &owner, "mine").await;
    for role in [Role::Student, Role::Teacher] {
        let other = app.user(role).await;
        let reply = app
            .get(
                &other.token,
                &format!("/api/v1/tokens?user_id={}", owner.id),
            )
            .await;
        let message = assert_forbidden(&reply);
        assert!(message.contains("your own tokens"), "{message}");
        assert!(!reply.1.to_string().contains("mine"));
        assert_forbidden(
            &app.delete(&other.token, &format!("/api/v1/tokens/{id}"))
                .await,
        );
        // Their own list does not show my token.
        assert_eq!(app.get_ok(&other.token, "/api/v1/tokens").await, json!([]));
        let denied = app
            .audit(&format!("actor={}&outcome=denied", other.username))
            .await;
        assert!(
            !with_action(&denied, "token.list").is_empty()
                && !with_action(&denied, "token.revoke").is_empty(),
            "{denied:?}"
        );
    }
    app.get_ok(&secret, "/api/v1/me").await;
    let list = app.get_ok(&owner.token, "/api/v1/tokens").await;
    assert_eq!(list[0]["revoked_at"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_cannot_end_my_login_session_by_its_id() {
    let app = TestApp::spawn().await;
    let owner = app.user(Role::Student).await;
    let other = app.user(Role::Student).await;
    let session_id = app
        .store
        .tokens_of(owner.id, voxhub_store::tokens::TokenKind::Session)
        .await
        .unwrap()[0]
        .id;
    assert_forbidden(
        &app.delete(&other.token, &format!("/api/v1/tokens/{session_id}"))
            .await,
    );
    app.get_ok(&owner.token, "/api/v1/me").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_lists_and_revokes_anyones_tokens() {
    let app = TestApp::spawn().await;
    let owner = app.user(Role::Teacher).await;
    let (id, secret) = new_token(&app, &owner, "teacher's").await;
    let list = app
        .get_ok(
            &app.admin.token,
            &format!("/api/v1/tokens?user_id={}", owner.id),
        )
        .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["name"], "teacher's");
    let (status, body) = app
        .delete(&app.admin.token, &format!("/api/v1/tokens/{id}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_error(&app.get(&secret, "/api/v1/me").await, 401, "token_revoked");
    let revoked = app.audit("action=token.revoke").await;
    assert_eq!(revoked[0]["admin_power"], true, "{revoked:?}");
    assert_eq!(revoked[0]["actor_name"], "admin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_names_and_expiries_are_checked() {
    let app = TestApp::spawn().await;
    let student = app.user(Role::Student).await;
    assert_field_error(
        &app.post(&student.token, "/api/v1/tokens", json!({"name": "  "}))
            .await,
        422,
        "invalid_input",
        "name",
    );
    assert_field_error(
        &app.post(
            &student.token,
            "/api/v1/tokens",
            json!({"name": "x".repeat(101)}),
        )
        .await,
        422,
        "invalid_input",
        "name",
    );
    assert_field_error(
        &app.post(&student.token, "/api/v1/tokens", json!({"name": "a\tb"}))
            .await,
        422,
        "invalid_input",
        "name",
    );
    let message = assert_field_error(
        &app.post(
            &student.token,
            "/api/v1/tokens",
            json!({"name": "forever", "expires_in": "5000d"}),
        )
        .await,
        422,
        "invalid_input",
        "expires_in",
    );
    assert!(message.contains("at most a year"), "{message}");
    assert_field_error(
        &app.post(
            &student.token,
            "/api/v1/tokens",
            json!({"name": "n", "expires_in": "never"}),
        )
        .await,
        422,
        "invalid_input",
        "expires_in",
    );
    assert_eq!(
        app.get_ok(&student.token, "/api/v1/tokens").await,
        json!([])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_out_with_an_api_token_is_refused_with_a_hint() {
    let app = TestApp::spawn().await;
    let student = app.user(Role::Student).await;
    let (_, secret) = new_token(&app, &student, "script").await;
    let message = assert_error(
        &app.post(&secret, "/api/v1/auth/logout", json!({})).await,
        400,
        "not_a_session",
    );
    assert!(message.contains("revoke the token"), "{message}");
    app.get_ok(&secret, "/api/v1/me").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_an_unknown_token_is_a_404_with_a_message() {
    let app = TestApp::spawn().await;
    let message = assert_error(
        &app.delete(&app.admin.token, "/api/v1/tokens/777").await,
        404,
        "not_found",
    );
    assert!(message.contains("777"), "{message}");
}
