//! Logging in and out, `/me`, changing one's password, and tokens that must stop working.

use crate::support::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use voxhub_core::role::Role;
use voxhub_store::tokens::TokenKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_admin_exists_and_can_log_in() {
    let app = TestApp::spawn().await;
    let reply = app.try_login("admin", PASSWORD).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let token = reply.body["token"].as_str().unwrap();
    assert!(token.starts_with("vxh_"), "{token}");
    let expires = time::OffsetDateTime::parse(
        reply.body["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("expires_at is RFC 3339");
    let hours = (expires - time::OffsetDateTime::now_utc()).whole_minutes() as f64 / 60.0;
    assert!(
        (11.9..=12.01).contains(&hours),
        "a login lasts 12 hours by default, not {hours}"
    );
    assert_eq!(reply.body["user"]["role"], "admin");
    assert!(
        reply.body["user"].get("password_hash").is_none(),
        "never show the hash: {}",
        reply.body
    );
    let me = app.get_ok(token, "/api/v1/me").await;
    assert_eq!(me["user"]["username"], "admin");
    assert_eq!(me["user"]["role"], "admin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usernames_are_not_case_sensitive_at_login() {
    let app = TestApp::spawn().await;
    let token = app.login("  ADMIN ", PASSWORD).await;
    assert_eq!(
        app.get_ok(&token, "/api/v1/me").await["user"]["username"],
        "admin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_ends_the_session_and_its_token_is_refused_afterwards() {
    let app = TestApp::spawn().await;
    let token = app.login("admin", PASSWORD).await;
    let (status, body) = app.post(&token, "/api/v1/auth/logout", json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let message = assert_error(&app.get(&token, "/api/v1/me").await, 401, "token_revoked");
    assert!(message.contains("log in again"), "{message}");
    // The admin's other session is untouched.
    app.get_ok(&app.admin.token, "/api/v1/me").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn me_shows_the_caller_and_their_classes_with_their_role_in_each() {
    let app = TestApp::spawn().await;
    let teacher = app.user(Role::Teacher).await;
    let student = app.user(Role::Student).await;
    let anatomy = app.create_class(&teacher.token, "Anatomy 1").await;
    let physics = app.create_class(&teacher.token, "Physics of MRI").await;
    app.create_class(&teacher.token, "Not for the student")
        .await;
    app.add_member(&teacher.token, anatomy, &student.username, "student")
        .await;
    app.add_member(&teacher.token, physics, &student.username, "student")
        .await;

    let me = app.get_ok(&student.token, "/api/v1/me").await;
    assert_eq!(me["user"]["id"], student.id);
    assert_eq!(me["user"]["role"], "student");
    let classes = me["classes"].as_array().unwrap();
    assert_eq!(classes.len(), 2, "{me}");
    assert!(classes.iter().all(|c| c["role"] == "student"), "{me}");
    let ids: Vec<i64> = classes.iter().map(|c| c["id"].as_i64().unwrap()).collect();
    assert!(ids.contains(&anatomy) && ids.contains(&physics), "{me}");

    let me = app.get_ok(&teacher.token, "/api/v1/me").await;
    assert_eq!(me["classes"].as_array().unwrap().len(), 3, "{me}");
    assert!(
        me["classes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["role"] == "teacher"),
        "{me}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_with_401_and_an_unknown_user_gets_the_same_answer() {
    let app = TestApp::spawn().await;
    let wrong = app.try_login("admin", "not the password at all").await;
    let message = assert_error(
        &(wrong.status, wrong.body.clone()),
        401,
        "wrong_credentials",
    );
    assert!(message.contains("wrong username or password"), "{message}");
    assert!(wrong.body.get("token").is_none());

    let unknown = app
        .try_login("nobody-here", "not the password at all")
        .await;
    assert_error(
        &(unknown.status, unknown.body.clone()),
        401,
        "wrong_credentials",
    );
    assert_eq!(
        unknown.body, wrong.body,
        "an unknown username must not be told apart from a wrong password"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_username_or_password_is_refused_with_a_hint() {
    let app = TestApp::spawn().await;
    let reply = app.try_login("", "").await;
    let message = assert_error(&(reply.status, reply.body), 422, "invalid_input");
    assert!(
        message.contains("username") && message.contains("password"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_valid_token_are_refused_with_401() {
    let app = TestApp::spawn().await;
    let message = assert_error(&app.get("", "/api/v1/me").await, 401, "unauthenticated");
    assert!(message.contains("Authorization"), "{message}");
    assert_error(
        &app.get("not-a-token", "/api/v1/me").await,
        401,
        "invalid_token",
    );
    let forged = format!("vxh_{}", "A".repeat(43));
    assert_error(&app.get(&forged, "/api/v1/me").await, 401, "invalid_token");
    let basic = app
        .send(
            app.builder(Method::GET, "", "/api/v1/me")
                .header("Authorization", "Basic YWRtaW46eA=="),
        )
        .await;
    assert_error(&basic.pair(), 401, "invalid_token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_password_ends_the_other_sessions_and_keeps_this_one() {
    let app = TestApp::spawn().await;
    let student = app.user(Role::Student).await;
    let other_session = app.session_for(student.id).await;
    let api_token = app
        .post(&student.token, "/api/v1/tokens", json!({"name": "script"}))
        .await
        .1["secret"]
        .as_str()
        .unwrap()
        .to_string();

    let new_password = "a brand new passphrase";
    let (status, body) = app
        .post(
            &student.token,
            "/api/v1/me/password",
            json!({"current_password": PASSWORD, "new_password": new_password}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    app.get_ok(&student.token, "/api/v1/me").await;
    assert_error(
        &app.get(&other_session, "/api/v1/me").await,
        401,
        "token_revoked",
    );
    // Personal API tokens are not sessions: they keep working until revoked.
    app.get_ok(&api_token, "/api/v1/me").await;

    let old = app.try_login(&student.username, PASSWORD).await;
    assert_error(&old.pair(), 401, "wrong_credentials");
    app.login(&student.username, new_password).await;

    let entries = app.audit("action=user.password_change").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["outcome"], "success");
    assert_eq!(entries[0]["actor_name"], student.username);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_password_with_a_wrong_current_password_is_refused_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let student = app.user(Role::Student).await;
    let other_session = app.session_for(student.id).await;
    let before = app.stored_hash(student.id).await;

    let reply = app
        .post(
            &student.token,
            "/api/v1/me/password",
            json!({"current_password": "this is not it", "new_password": "a brand new passphrase"}),
        )
        .await;
    let message = assert_field_error(&reply, 403, "invalid_input", "current_password");
    assert!(message.contains("current password is wrong"), "{message}");

    assert_eq!(
        app.stored_hash(student.id).await,
        before,
        "the password must not change"
    );
    app.get_ok(&other_session, "/api/v1/me").await;
    let failures = app
        .audit("action=user.password_change&outcome=failure")
        .await;
    assert_eq!(
        failures.len(),
        1,
        "the refused change is audited: {failures:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_password_that_breaks_the_rules_is_refused_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let student = app
        .named_user("margaret.hamilton", "Margaret", Role::Student)
        .await;
    let before = app.stored_hash(student.id).await;
    let reply = app
        .post(
            &student.token,
            "/api/v1/me/password",
            json!({"current_password": PASSWORD, "new_password": "short"}),
        )
        .await;
    let message = assert_error(&reply, 422, "invalid_input");
    assert!(message.contains("at least 10 characters"), "{message}");
    let reply = app
        .post(
            &student.token,
            "/api/v1/me/password",
            json!({"current_password": PASSWORD, "new_password": "Margaret.Hamilton"}),
        )
        .await;
    let message = assert_error(&reply, 422, "invalid_input");
    assert!(message.contains("same as the username"), "{message}");
    assert_eq!(app.stored_hash(student.id).await, before);
    app.get_ok(&student.token, "/api/v1/me").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_new_password_names_the_new_password_field() {
    let app = TestApp::spawn().await;
    let student = app.user(Role::Student).await;
    let reply = app
        .post(
            &student.token,
            "/api/v1/me/password",
            json!({"current_password": PASSWORD, "new_password": "short"}),
        )
        .await;
    assert_field_error(&reply, 422, "invalid_input", "new_password");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_user_cannot_log_in_and_their_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let student = app.user(Role::Student).await;
    let (_, created) = app
        .post(&student.token, "/api/v1/tokens", json!({"name": "laptop"}))
        .await;
    let api_token = created["secret"].as_str().unwrap().to_string();

    let (status, body) = app
        .patch(
            &app.admin.token,
            &format!("/api/v1/users/{}", student.id),
            json!({"disabled": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["disabled"], true);

    let login = app.try_login(&student.username, PASSWORD).await;
    let message = assert_error(&login.pair(), 403, "account_disabled");
    assert!(message.contains("administrator"), "{message}");
    // Disabling ends the sessions ...
    assert_error(
        &app.get(&student.token, "/api/v1/me").await,
        401,
        "token_revoked",
    );
    // ... and personal tokens are refused while the account is disabled.
    assert_error(
        &app.get(&api_token, "/api/v1/me").await,
        403,
        "account_disabled",
    );

    let failures = app.audit("action=auth.login&outcome=failure").await;
    assert!(
        failures
            .iter()
            .any(|e| e["detail"] == "account is disabled"),
        "{failures:?}"
    );

    let (status, _) = app
        .patch(
            &app.admin.token,
            &format!("/api/v1/users/{}", student.id),
            json!({"disabled": false}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    app.get_ok(&api_token, "/api/v1/me").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_session_token_is_refused_with_401() {
    let app = TestApp::spawn().await;
    let student = app.user(Role::Student).await;
    let session_id = app
        .store
        .tokens_of(student.id, TokenKind::Session)
        .await
        .unwrap()[0]
        .id;
    let (status, body) = app
        .delete(&student.token, &format!("/api/v1/tokens/{session_id}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["revoked_at"].is_string(), "{body}");
    assert_error(
        &app.get(&student.token, "/api/v1/me").await,
        401,
        "token_revoked",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refused_with_401() {
    let app = TestApp::spawn().await;
    let student = app.user(Role::Student).await;
    let expired_session = app
        .token_for(student.id, TokenKind::Session, voxhub_store::now_s() - 1)
        .await;
    let expired_api = app
        .token_for(student.id, TokenKind::Api, voxhub_store::now_s() - 3600)
        .await;
    for token in [&expired_session, &expired_api] {
        let message = assert_error(&app.get(token, "/api/v1/me").await, 401, "token_expired");
        assert!(message.contains("expired"), "{message}");
        assert_error(
            &app.get(token, "/api/v1/classes").await,
            401,
            "token_expired",
        );
    }
}
