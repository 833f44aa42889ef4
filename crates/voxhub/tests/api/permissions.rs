//! Access rules across the whole API: anonymous callers get 401 everywhere a token is
//! needed, and admin-only operations refuse teachers and students.

use crate::support::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use voxhub_core::role::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_callers_are_refused_with_401_by_every_operation_that_needs_a_token() {
    let app = TestApp::spawn().await;
    let doc = app.get_ok("", "/api/openapi.json").await;
    let mut secured = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let url = path
                .replace("{id}", "1")
                .replace("{user_id}", "1")
                .replace("{invite_id}", "1");
            let body = matches!(method, Method::POST | Method::PATCH).then(|| json!({}));
            let needs_token = operation["security"]
                .as_array()
                .is_some_and(|s| !s.is_empty());
            let (status, reply) = app.call(method.clone(), "", &url, body).await;
            if needs_token {
                secured += 1;
                let message = assert_error(&(status, reply), 401, "unauthenticated");
                assert!(message.contains("log in"), "{method} {url}: {message}");
            } else {
                assert_ne!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {url} is documented as open"
                );
            }
        }
    }
    assert!(secured >= 20, "{secured}");
    assert_eq!(
        app.get_ok(&app.admin.token, "/api/v1/classes").await,
        json!([]),
        "nothing was created"
    );
}

/// Each admin-only operation, for a teacher and a student: 403 `forbidden` with a message
/// that says an admin is needed (or that only one's own things are allowed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_only_operations_refuse_teachers_and_students() {
    let app = TestApp::spawn().await;
    let admin_session = app
        .store
        .tokens_of(app.admin.id, voxhub_store::tokens::TokenKind::Session)
        .await
        .unwrap()[0]
        .id;
    let a = app.admin.id;
    let cases: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/api/v1/users".into(), None),
        (
            Method::POST,
            "/api/v1/users".into(),
            Some(
                json!({"username": "x1x", "display_name": "X", "role": "admin", "password": PASSWORD}),
            ),
        ),
        (Method::GET, format!("/api/v1/users/{a}"), None),
        (
            Method::PATCH,
            format!("/api/v1/users/{a}"),
            Some(json!({"disabled": true})),
        ),
        (
            Method::PATCH,
            format!("/api/v1/users/{a}"),
            Some(json!({"display_name": "Pwned"})),
        ),
        (
            Method::POST,
            format!("/api/v1/users/{a}/password"),
            Some(json!({"password": "taken over now"})),
        ),
        (Method::GET, "/api/v1/audit".into(), None),
        (Method::GET, "/api/v1/audit/verify".into(), None),
        (Method::GET, format!("/api/v1/tokens?user_id={a}"), None),
        (
            Method::DELETE,
            format!("/api/v1/tokens/{admin_session}"),
            None,
        ),
    ];
    for role in [Role::Teacher, Role::Student] {
        let caller = app.user(role).await;
        for (method, path, body) in &cases {
            let reply = app
                .call(method.clone(), &caller.token, path, body.clone())
                .await;
            let message = assert_forbidden(&reply);
            assert!(
                message.contains("admin") || message.contains("your own"),
                "{method} {path}: {message}"
            );
        }
    }
    let me = app.get_ok(&app.admin.token, "/api/v1/me").await;
    assert_eq!(me["user"]["display_name"], "Administrator");
    assert_eq!(me["user"]["disabled"], false);
    assert!(!app.user_exists("x1x").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teacher_of_one_class_has_no_power_over_another_teachers_students() {
    let app = TestApp::spawn().await;
    let teacher = app.user(Role::Teacher).await;
    let other_teacher = app.user(Role::Teacher).await;
    let student = app.user(Role::Student).await;
    let class = app.create_class(&teacher.token, "Theirs").await;
    app.add_member(&teacher.token, class, &student.username, "student")
        .await;
    let own_class = app.create_class(&other_teacher.token, "Mine").await;

    // Adding the student to one's own class is allowed (it gives no power over them) ...
    app.add_member(
        &other_teacher.token,
        own_class,
        &student.username,
        "student",
    )
    .await;
    // ... but their account, tokens and other class stay out of reach.
    assert_forbidden(
        &app.get(
            &other_teacher.token,
            &format!("/api/v1/users/{}", student.id),
        )
        .await,
    );
    assert_forbidden(
        &app.patch(
            &other_teacher.token,
            &format!("/api/v1/users/{}", student.id),
            json!({"display_name": "x"}),
        )
        .await,
    );
    assert_forbidden(
        &app.get(
            &other_teacher.token,
            &format!("/api/v1/tokens?user_id={}", student.id),
        )
        .await,
    );
    assert_forbidden(
        &app.delete(
            &other_teacher.token,
            &format!("/api/v1/classes/{class}/members/{}", student.id),
        )
        .await,
    );
    assert!(
        app.members(class)
            .await
            .iter()
            .any(|m| m["username"] == student.username)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demoted_teacher_loses_platform_powers_at_once() {
    let app = TestApp::spawn().await;
    let teacher = app.user(Role::Teacher).await;
    let (status, _) = app
        .patch(
            &app.admin.token,
            &format!("/api/v1/users/{}", teacher.id),
            json!({"role": "student"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let message = assert_forbidden(
        &app.post(
            &teacher.token,
            "/api/v1/classes",
            json!({"name": "x", "starts_on": "2026-01-01", "ends_on": "2026-01-02"}),
        )
        .await,
    );
    assert!(
        message.contains("students cannot create classes"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_answers_carry_the_security_headers_and_json_errors() {
    let app = TestApp::spawn().await;
    for (token, path) in [
        (app.admin.token.as_str(), "/api/v1/me"),
        ("", "/api/v1/me"),
        ("", "/api/openapi.json"),
    ] {
        let reply = app.send(app.builder(Method::GET, token, path)).await;
        let header = |name: &str| {
            reply
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert!(
            header("content-type").starts_with("application/json"),
            "{path}: {}",
            header("content-type")
        );
    }
}
