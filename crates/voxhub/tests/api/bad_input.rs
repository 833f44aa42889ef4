//! Bad input of every kind is answered with a 4xx that says what is wrong, never a 500.

use crate::support::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use voxhub_core::role::Role;

/// Sends a raw body with the given content type (none when empty).
async fn raw(
    app: &TestApp,
    method: Method,
    token: &str,
    path: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, Value) {
    let mut request = app.builder(method, token, path).body(body);
    if !content_type.is_empty() {
        request = request.header("Content-Type", content_type);
    }
    app.send(request).await.pair()
}

struct Setup {
    app: TestApp,
    teacher: TestUser,
    class: i64,
}

async fn setup() -> Setup {
    let app = TestApp::spawn().await;
    let teacher = app.user(Role::Teacher).await;
    let class = app.create_class(&teacher.token, "Original").await;
    Setup {
        app,
        teacher,
        class,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_refused_with_400_malformed_json() {
    let Setup {
        app,
        teacher,
        class,
    } = setup().await;
    let cases = [
        (
            Method::POST,
            "".to_string(),
            "/api/v1/auth/login".to_string(),
        ),
        (
            Method::POST,
            "".to_string(),
            "/api/v1/auth/register".to_string(),
        ),
        (
            Method::POST,
            teacher.token.clone(),
            "/api/v1/classes".to_string(),
        ),
        (
            Method::PATCH,
            teacher.token.clone(),
            format!("/api/v1/classes/{class}"),
        ),
        (
            Method::POST,
            teacher.token.clone(),
            format!("/api/v1/classes/{class}/invites"),
        ),
        (
            Method::POST,
            teacher.token.clone(),
            "/api/v1/tokens".to_string(),
        ),
        (
            Method::POST,
            app.admin.token.clone(),
            "/api/v1/users".to_string(),
        ),
    ];
    for (method, token, path) in cases {
        for body in [
            "{",
            "{name: 'x'}",
            "not json at all",
            "{,}",
            "",
            "{\"unterminated",
        ] {
            let reply = raw(
                &app,
                method.clone(),
                &token,
                &path,
                "application/json",
                body,
            )
            .await;
            let message = assert_error(&reply, 400, "malformed_json");
            assert!(
                message.contains("not valid JSON"),
                "{method} {path} {body:?}: {message}"
            );
        }
    }
    assert_eq!(
        app.get_ok(&app.admin.token, "/api/v1/classes")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_of_the_wrong_type_are_refused_with_422() {
    let Setup {
        app,
        teacher,
        class,
    } = setup().await;
    let invites = format!("/api/v1/classes/{class}/invites");
    let reply = app
        .post(
            &teacher.token,
            &invites,
            json!({"role": "student", "max_uses": "60"}),
        )
        .await;
    let message = assert_error(&reply, 422, "invalid_body");
    assert!(
        message.contains("max_uses") || message.contains("invalid type"),
        "{message}"
    );
    assert_error(
        &app.post(
            &teacher.token,
            &invites,
            json!({"role": "student", "max_uses": 1.5}),
        )
        .await,
        422,
        "invalid_body",
    );
    let message = assert_error(
        &app.post(
            &teacher.token,
            &invites,
            json!({"role": "principal", "max_uses": 1}),
        )
        .await,
        422,
        "invalid_body",
    );
    assert!(
        message.contains("principal"),
        "the bad value is named: {message}"
    );
    assert_error(
        &app.post(&teacher.token, &invites, json!(["role", "student"]))
            .await,
        422,
        "invalid_body",
    );
    assert_error(
        &app.post(&teacher.token, &invites, json!(null)).await,
        422,
        "invalid_body",
    );
    assert_error(
        &app.patch(
            &app.admin.token,
            &format!("/api/v1/users/{}", teacher.id),
            json!({"disabled": "yes"}),
        )
        .await,
        422,
        "invalid_body",
    );
    assert_error(
        &app.post(
            "",
            "/api/v1/auth/login",
            json!({"username": 42, "password": true}),
        )
        .await,
        422,
        "invalid_body",
    );
    assert_eq!(
        app.get_ok(&teacher.token, &invites).await,
        json!([]),
        "nothing was created"
    );
    assert_eq!(
        app.get_ok(&app.admin.token, &format!("/api/v1/users/{}", teacher.id))
            .await["disabled"],
        false
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_fields_are_refused_with_422_naming_the_field() {
    let Setup {
        app,
        teacher,
        class,
    } = setup().await;
    let cases = [
        (
            "/api/v1/classes".to_string(),
            json!({"name": "No dates"}),
            "starts_on",
        ),
        (
            format!("/api/v1/classes/{class}/invites"),
            json!({"role": "student"}),
            "max_uses",
        ),
        ("/api/v1/tokens".to_string(), json!({}), "name"),
        (
            format!("/api/v1/classes/{class}/members"),
            json!({"username": "admin"}),
            "role",
        ),
    ];
    for (path, body, field) in cases {
        let message = assert_error(
            &app.post(&teacher.token, &path, body).await,
            422,
            "invalid_body",
        );
        assert!(
            message.contains("missing field") && message.contains(field),
            "{path}: {message}"
        );
    }
    let message = assert_error(
        &app.post("", "/api/v1/auth/login", json!({"username": "admin"}))
            .await,
        422,
        "invalid_body",
    );
    assert!(message.contains("password"), "{message}");
    let message = assert_error(
        &app.post(
            "",
            "/api/v1/auth/register",
            json!({"invite_code": "x", "username": "y", "password": "z"}),
        )
        .await,
        422,
        "invalid_body",
    );
    assert!(message.contains("display_name"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_are_refused_with_422_naming_the_field() {
    let Setup {
        app,
        teacher,
        class,
    } = setup().await;
    let reply = app
        .post(
            "",
            "/api/v1/auth/login",
            json!({"username": "admin", "password": PASSWORD, "remember_me": true}),
        )
        .await;
    let message = assert_error(&reply, 422, "invalid_body");
    assert!(message.contains("remember_me"), "{message}");
    let message = assert_error(
        &app.patch(
            &teacher.token,
            &format!("/api/v1/users/{}", teacher.id),
            json!({"rol": "admin"}),
        )
        .await,
        422,
        "invalid_body",
    );
    assert!(message.contains("rol"), "{message}");
    let message = assert_error(
        &app.patch(
            &teacher.token,
            &format!("/api/v1/classes/{class}"),
            json!({"title": "New"}),
        )
        .await,
        422,
        "invalid_body",
    );
    assert!(message.contains("title"), "{message}");
    let message = assert_error(
        &app.post(
            &teacher.token,
            &format!("/api/v1/classes/{class}/invites"),
            json!({"role": "student", "max_uses": 1, "uses": 5}),
        )
        .await,
        422,
        "invalid_body",
    );
    assert!(message.contains("`uses`"), "{message}");
    assert_eq!(
        app.get_ok(&teacher.token, &format!("/api/v1/classes/{class}"))
            .await["name"],
        "Original"
    );
    assert_eq!(
        app.get_ok(&teacher.token, "/api/v1/me").await["user"]["role"],
        "teacher"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_64_kib_is_refused_with_413() {
    let Setup { app, teacher, .. } = setup().await;
    let huge = json!({"name": "Big", "description": "x".repeat(70 * 1024), "starts_on": "2026-01-01", "ends_on": "2026-02-01"});
    let reply = app.post(&teacher.token, "/api/v1/classes", huge).await;
    let message = assert_error(&reply, 413, "body_too_large");
    assert!(message.contains("64 KiB"), "{message}");
    let reply = app
        .post(
            "",
            "/api/v1/auth/login",
            json!({"username": "admin", "password": "p".repeat(100 * 1024)}),
        )
        .await;
    assert_error(&reply, 413, "body_too_large");
    assert_eq!(
        app.get_ok(&teacher.token, "/api/v1/classes")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_without_a_json_content_type_is_refused_with_415() {
    let Setup { app, teacher, .. } = setup().await;
    let body = r#"{"name":"Plain","starts_on":"2026-01-01","ends_on":"2026-02-01"}"#;
    for content_type in ["", "text/plain", "application/x-www-form-urlencoded"] {
        let reply = raw(
            &app,
            Method::POST,
            &teacher.token,
            "/api/v1/classes",
            content_type,
            body,
        )
        .await;
        let message = assert_error(&reply, 415, "unsupported_media_type");
        assert!(
            message.contains("Content-Type: application/json"),
            "{message}"
        );
    }
    let reply = raw(
        &app,
        Method::POST,
        "",
        "/api/v1/auth/login",
        "",
        r#"{"username":"admin","password":"x"}"#,
    )
    .await;
    assert_error(&reply, 415, "unsupported_media_type");
    assert_eq!(
        app.get_ok(&teacher.token, "/api/v1/classes")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlong_names_are_refused_with_422_naming_the_field() {
    let Setup {
        app,
        teacher,
        class,
    } = setup().await;
    let admin = &app.admin.token;
    let users = app.user_count().await;
    let long_display = "d".repeat(101);
    let reply = app
        .post(admin, "/api/v1/users", json!({"username": "okname", "display_name": long_display, "role": "student", "password": PASSWORD}))
        .await;
    let message = assert_field_error(&reply, 422, "invalid_input", "display_name");
    assert!(
        message.contains("at most 100 characters") && message.contains("101"),
        "{message}"
    );
    let reply = app
        .post(admin, "/api/v1/users", json!({"username": "u".repeat(33), "display_name": "Fine", "role": "student", "password": PASSWORD}))
        .await;
    let message = assert_field_error(&reply, 422, "invalid_input", "username");
    assert!(message.contains("3 to 32 characters"), "{message}");
    assert_eq!(app.user_count().await, users);

    // Exactly at the limits is fine.
    let (status, body) = app
        .patch(
            &teacher.token,
            &format!("/api/v1/users/{}", teacher.id),
            json!({"display_name": "d".repeat(100)}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let reply = app
        .patch(
            &teacher.token,
            &format!("/api/v1/users/{}", teacher.id),
            json!({"display_name": long_display}),
        )
        .await;
    assert_field_error(&reply, 422, "invalid_input", "display_name");
    // Multi-byte characters count as one.
    let (status, _) = app
        .patch(
            &teacher.token,
            &format!("/api/v1/users/{}", teacher.id),
            json!({"display_name": "ü".repeat(100)}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let reply = app
        .post(
            &teacher.token,
            "/api/v1/classes",
            json!({"name": "c".repeat(101), "starts_on": "2026-01-01", "ends_on": "2026-02-01"}),
        )
        .await;
    assert_field_error(&reply, 422, "invalid_input", "name");
    let reply = app
        .patch(
            &teacher.token,
            &format!("/api/v1/classes/{class}"),
            json!({"name": "c".repeat(101)}),
        )
        .await;
    assert_field_error(&reply, 422, "invalid_input", "name");
    let reply = app
        .patch(
            &teacher.token,
            &format!("/api/v1/classes/{class}"),
            json!({"description": "x".repeat(4001)}),
        )
        .await;
    assert_field_error(&reply, 422, "invalid_input", "description");
    let reply = app
        .patch(
            &teacher.token,
            &format!("/api/v1/classes/{class}"),
            json!({"name": "   "}),
        )
        .await;
    let message = assert_field_error(&reply, 422, "invalid_input", "name");
    assert!(message.contains("must not be empty"), "{message}");
    let reply = app
        .patch(
            &teacher.token,
            &format!("/api/v1/classes/{class}"),
            json!({"name": "line\nbreak"}),
        )
        .await;
    assert_field_error(&reply, 422, "invalid_input", "name");
    assert_eq!(
        app.get_ok(&teacher.token, &format!("/api/v1/classes/{class}"))
            .await["name"],
        "Original"
    );
    assert_eq!(
        app.get_ok(&teacher.token, "/api/v1/classes")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_dates_and_an_end_before_the_start_are_refused_with_422() {
    let Setup {
        app,
        teacher,
        class,
    } = setup().await;
    let create = |starts_on: &str, ends_on: &str| {
        app.post(
            &teacher.token,
            "/api/v1/classes",
            json!({"name": "Dated", "starts_on": starts_on, "ends_on": ends_on}),
        )
    };
    for (start, end, field) in [
        ("2026-13-01", "2027-01-01", "starts_on"),
        ("2026-02-30", "2027-01-01", "starts_on"),
        ("01.09.2026", "2027-01-01", "starts_on"),
        ("", "2027-01-01", "starts_on"),
        ("2026-09-01", "tomorrow", "ends_on"),
        ("2026-09-01", "2026-9-1x", "ends_on"),
    ] {
        let message = assert_field_error(&create(start, end).await, 422, "invalid_input", field);
        assert!(message.contains("YYYY-MM-DD"), "{start} {end}: {message}");
    }
    let message = assert_field_error(
        &create("2026-09-01", "2026-08-31").await,
        422,
        "invalid_input",
        "ends_on",
    );
    assert!(message.contains("before its first day"), "{message}");
    let (status, body) = create("2026-09-01", "2026-09-01").await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "a one-day class is fine: {body}"
    );

    // A change that would put the end before the stored start is refused too.
    let path = format!("/api/v1/classes/{class}");
    assert_field_error(
        &app.patch(&teacher.token, &path, json!({"ends_on": "2020-01-01"}))
            .await,
        422,
        "invalid_input",
        "ends_on",
    );
    assert_field_error(
        &app.patch(&teacher.token, &path, json!({"starts_on": "2030-01-01"}))
            .await,
        422,
        "invalid_input",
        "ends_on",
    );
    let now = app.get_ok(&teacher.token, &path).await;
    assert_eq!(
        (now["starts_on"].as_str(), now["ends_on"].as_str()),
        (Some("2026-09-01"), Some("2027-01-31"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ids_are_404_with_a_message() {
    let Setup { app, class, .. } = setup().await;
    let admin = &app.admin.token;
    for (method, path) in [
        (Method::GET, "/api/v1/users/9999".to_string()),
        (Method::GET, "/api/v1/classes/9999".to_string()),
        (Method::GET, "/api/v1/classes/9999/members".to_string()),
        (Method::DELETE, "/api/v1/tokens/9999".to_string()),
        (
            Method::DELETE,
            format!("/api/v1/classes/{class}/invites/9999"),
        ),
        (
            Method::DELETE,
            format!("/api/v1/classes/{class}/members/9999"),
        ),
        (Method::GET, "/api/v1/users/0".to_string()),
        (Method::GET, "/api/v1/classes/-7".to_string()),
    ] {
        let reply = app.call(method.clone(), admin, &path, None).await;
        let message = assert_error(&reply, 404, "not_found");
        assert!(
            message.contains("there is no") || message.contains("has no"),
            "{method} {path}: {message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_that_are_not_numbers_are_refused_with_400() {
    let Setup { app, class, .. } = setup().await;
    let admin = &app.admin.token;
    for (method, path) in [
        (Method::GET, "/api/v1/users/abc".to_string()),
        (Method::GET, "/api/v1/users/1.5".to_string()),
        (
            Method::GET,
            "/api/v1/users/99999999999999999999999".to_string(),
        ),
        (Method::GET, "/api/v1/classes/first".to_string()),
        (Method::GET, "/api/v1/classes/%20/members".to_string()),
        (Method::DELETE, "/api/v1/tokens/latest".to_string()),
        (
            Method::DELETE,
            format!("/api/v1/classes/{class}/members/me"),
        ),
        (Method::DELETE, format!("/api/v1/classes/x/invites/{class}")),
    ] {
        let reply = app.call(method.clone(), admin, &path, None).await;
        let message = assert_error(&reply, 400, "invalid_path");
        assert!(
            message.contains("whole numbers"),
            "{method} {path}: {message}"
        );
    }
    let reply = app
        .patch(admin, "/api/v1/users/abc", json!({"disabled": true}))
        .await;
    assert_error(&reply, 400, "invalid_path");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_query_parameters_are_refused_with_400() {
    let Setup { app, .. } = setup().await;
    let admin = &app.admin.token;
    for path in [
        "/api/v1/audit?limit=0",
        "/api/v1/audit?limit=x",
        "/api/v1/users?page=2",
        "/api/v1/tokens?user_id=me",
        "/api/v1/tokens?owner=1",
    ] {
        assert_error(&app.get(admin, path).await, 400, "invalid_query");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_api_paths_and_wrong_methods_are_404_and_405_not_500() {
    let Setup { app, .. } = setup().await;
    let admin = &app.admin.token;
    for path in [
        "/api/v1/whatever",
        "/api/v1/users/1/friends",
        "/api/v2/users",
        "/api/v1/",
    ] {
        let (status, body) = app.get(admin, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    for (method, path) in [
        (Method::PUT, "/api/v1/me"),
        (Method::DELETE, "/api/v1/users"),
        (Method::GET, "/api/v1/auth/login"),
    ] {
        let (status, body) = app.call(method.clone(), admin, path, None).await;
        assert_eq!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_where_a_role_is_expected_is_a_422_not_malformed_json() {
    let Setup {
        app,
        teacher,
        class,
    } = setup().await;
    let invites = format!("/api/v1/classes/{class}/invites");
    assert_error(
        &app.post(&teacher.token, &invites, json!({"role": 1, "max_uses": 1}))
            .await,
        422,
        "invalid_body",
    );
    let reply = app
        .post(&app.admin.token, "/api/v1/users", json!({"username": "okname", "display_name": "Ok", "role": ["admin"], "password": PASSWORD}))
        .await;
    assert_error(&reply, 422, "invalid_body");
    assert_error(
        &app.patch(
            &app.admin.token,
            &format!("/api/v1/users/{}", teacher.id),
            json!({"role": 2}),
        )
        .await,
        422,
        "invalid_body",
    );
}

/// A barrage of odd values at every writing endpoint: none gets a 5xx, refusals carry an
/// error code, and nothing invalid is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_values_never_cause_a_server_error() {
    let Setup {
        app,
        teacher,
        class,
    } = setup().await;
    let odd: Vec<Value> = vec![
        json!(""),
        json!(" "),
        json!("\u{0000}"),
        json!("a\u{0007}b"),
        json!("🦀".repeat(40)),
        json!("'; DROP TABLE users; --"),
        json!("x".repeat(3000)),
        json!(i64::MAX),
        json!(i64::MIN),
        json!(-1),
        json!(1e300),
        json!(true),
        json!(null),
        json!([]),
        json!({}),
    ];
    let admin = app.admin.token.clone();
    for value in &odd {
        let requests: Vec<(Method, &str, String, Value)> = vec![
            (
                Method::POST,
                "",
                "/api/v1/auth/login".into(),
                json!({"username": value, "password": value}),
            ),
            (
                Method::POST,
                "",
                "/api/v1/auth/register".into(),
                json!({"invite_code": value, "username": value, "password": value, "display_name": value}),
            ),
            (
                Method::POST,
                &admin,
                "/api/v1/users".into(),
                json!({"username": value, "display_name": value, "role": value, "password": value}),
            ),
            (
                Method::PATCH,
                &admin,
                format!("/api/v1/users/{}", teacher.id),
                json!({"display_name": value}),
            ),
            (
                Method::POST,
                &teacher.token,
                "/api/v1/classes".into(),
                json!({"name": value, "description": value, "starts_on": value, "ends_on": value}),
            ),
            (
                Method::PATCH,
                &teacher.token,
                format!("/api/v1/classes/{class}"),
                json!({"name": value, "starts_on": value}),
            ),
            (
                Method::POST,
                &teacher.token,
                format!("/api/v1/classes/{class}/members"),
                json!({"username": value, "role": "student"}),
            ),
            (
                Method::POST,
                &teacher.token,
                format!("/api/v1/classes/{class}/invites"),
                json!({"role": "student", "max_uses": value, "expires_in": value}),
            ),
            (
                Method::POST,
                &teacher.token,
                format!("/api/v1/classes/{class}/invites"),
                json!({"role": "student", "max_uses": 1, "expires_in": value}),
            ),
            (
                Method::POST,
                &teacher.token,
                "/api/v1/tokens".into(),
                json!({"name": value, "expires_in": value}),
            ),
            (
                Method::POST,
                &teacher.token,
                "/api/v1/me/password".into(),
                json!({"current_password": value, "new_password": value}),
            ),
        ];
        for (method, token, path, body) in requests {
            // `call` fails on any 5xx; a few odd values are fine (an emoji display name).
            let (status, reply) = app
                .call(method.clone(), token, &path, Some(body.clone()))
                .await;
            assert!(
                status.is_success() || reply["error"]["code"].is_string(),
                "{method} {path} {body}: {status} {reply}"
            );
        }
    }
    for query in [
        "actor=%00",
        "action=%25%25",
        "target=%27",
        "before=-1",
        "before=9223372036854775807",
        "outcome=",
    ] {
        let (status, body) = app.get(&admin, &format!("/api/v1/audit?{query}")).await;
        assert!(
            status == StatusCode::OK || status.is_client_error(),
            "{query}: {status} {body}"
        );
    }
    assert_eq!(
        app.get_ok(&admin, "/api/v1/classes")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        app.get_ok(&admin, &format!("/api/v1/classes/{class}"))
            .await["name"],
        "Original"
    );
    assert_eq!(app.user_count().await, 2);
    assert_eq!(
        app.get_ok(&teacher.token, "/api/v1/tokens").await,
        json!([])
    );
}
