//! Invite codes: creating them, and registering with them. Every refused registration
//! creates no account and does not use up the code.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use voxhub_core::role::{ClassRole, Role};
use voxhub_store::invites::NewInvite;

struct Setup {
    app: TestApp,
    teacher: TestUser,
    class: i64,
}

async fn setup() -> Setup {
    let app = TestApp::spawn().await;
    let teacher = app.user(Role::Teacher).await;
    let class = app.create_class(&teacher.token, "Imaging 101").await;
    Setup {
        app,
        teacher,
        class,
    }
}

/// Checks that a refused registration left no trace but its audit entry.
async fn assert_nothing_created(app: &TestApp, username: &str, users_before: usize) {
    assert_eq!(
        app.user_count().await,
        users_before,
        "no account was created"
    );
    assert!(
        !app.user_exists(username).await,
        "{username} must not exist"
    );
    let login = app.try_login(username, PASSWORD).await;
    assert_error(&login.pair(), 401, "wrong_credentials");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_invite_shows_its_uses_expiry_and_status() {
    let Setup {
        app,
        teacher,
        class,
    } = setup().await;
    let (status, invite) = app
        .post(
            &teacher.token,
            &format!("/api/v1/classes/{class}/invites"),
            json!({"role": "student", "max_uses": 60, "expires_in": "14d"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{invite}");
    let code = invite["code"].as_str().unwrap();
    assert_eq!(code.len(), 14, "XXXX-XXXX-XXXX: {code}");
    assert_eq!(code.matches('-').count(), 2);
    assert_eq!(invite["class_id"], class);
    assert_eq!(invite["role"], "student");
    assert_eq!(invite["max_uses"], 60);
    assert_eq!(invite["uses"], 0);
    assert_eq!(invite["status"], "active");
    assert_eq!(invite["created_by"], teacher.username);
    assert_eq!(invite["revoked_at"], Value::Null);
    let expires = time::OffsetDateTime::parse(
        invite["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let in_days = (expires - time::OffsetDateTime::now_utc()).whole_hours() as f64 / 24.0;
    assert!(
        (13.9..=14.01).contains(&in_days),
        "expires in {in_days} days"
    );

    let listed = app
        .get_ok(&teacher.token, &format!("/api/v1/classes/{class}/invites"))
        .await;
    assert_eq!(listed[0]["code"], code);
    let created = app.audit("action=invite.create").await;
    assert!(
        created[0]["detail"].as_str().unwrap().contains(code),
        "{created:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_with_a_student_invite_puts_the_new_account_in_the_class_as_a_student() {
    let Setup {
        app,
        teacher,
        class,
    } = setup().await;
    let invite = app
        .create_invite(&teacher.token, class, "student", 60)
        .await;
    let (status, user) = app
        .post(
            "",
            "/api/v1/auth/register",
            json!({"invite_code": invite["code"], "username": "Marie", "password": "radium and polonium", "display_name": "Marie Curie"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    assert_eq!(user["username"], "marie");
    assert_eq!(user["role"], "student");
    assert_eq!(user["display_name"], "Marie Curie");
    assert!(user.get("password_hash").is_none());

    let token = app.login("marie", "radium and polonium").await;
    let me = app.get_ok(&token, "/api/v1/me").await;
    assert_eq!(
        me["classes"],
        json!([{"id": class, "name": "Imaging 101", "role": "student"}])
    );
    assert_eq!(
        app.invite(class, invite["id"].as_i64().unwrap()).await["uses"],
        1
    );
    let registered = app.audit("action=auth.register&outcome=success").await;
    assert_eq!(registered.len(), 1);
    assert_eq!(registered[0]["actor_name"], "marie");
    assert_eq!(registered[0]["source"], "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_with_a_teacher_invite_makes_a_platform_teacher_who_teaches_the_class() {
    let Setup {
        app,
        teacher,
        class,
    } = setup().await;
    let invite = app.create_invite(&teacher.token, class, "teacher", 1).await;
    let (status, user) = app
        .register(invite["code"].as_str().unwrap(), "coteacher")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    assert_eq!(user["role"], "teacher");
    let token = app.session_for(user["id"].as_i64().unwrap()).await;
    assert_eq!(
        app.get_ok(&token, &format!("/api/v1/classes/{class}"))
            .await["my_role"],
        "teacher"
    );
    // As a teacher of the class, they may see its invite codes.
    app.get_ok(&token, &format!("/api/v1/classes/{class}/invites"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_invite_code_is_refused_with_404_and_creates_no_account() {
    let Setup {
        app,
        teacher,
        class,
    } = setup().await;
    let invite = app.create_invite(&teacher.token, class, "student", 5).await;
    let users = app.user_count().await;
    for code in ["ABCD-EFGH-JKMN", "not a code", ""] {
        let message = assert_field_error(
            &app.register(code, "newcomer").await,
            404,
            "invite_unknown",
            "invite_code",
        );
        assert!(
            message.contains("does not exist") && message.contains("typos"),
            "{message}"
        );
    }
    assert_nothing_created(&app, "newcomer", users).await;
    assert_eq!(
        app.invite(class, invite["id"].as_i64().unwrap()).await["uses"],
        0
    );
    let failures = app.audit("action=auth.register&outcome=failure").await;
    assert_eq!(
        failures.len(),
        3,
        "refused registrations are audited: {failures:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_invite_is_refused_with_410_and_creates_no_account() {
    let Setup {
        app,
        teacher,
        class,
    } = setup().await;
    let invite = app.create_invite(&teacher.token, class, "student", 5).await;
    let id = invite["id"].as_i64().unwrap();
    let (status, revoked) = app
        .delete(
            &teacher.token,
            &format!("/api/v1/classes/{class}/invites/{id}"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["status"], "revoked");
    assert!(revoked["revoked_at"].is_string());
    let users = app.user_count().await;

    let message = assert_field_error(
        &app.register(invite["code"].as_str().unwrap(), "latecomer")
            .await,
        410,
        "invite_revoked",
        "invite_code",
    );
    assert!(
        message.contains("revoked") && message.contains("new code"),
        "{message}"
    );
    assert_nothing_created(&app, "latecomer", users).await;
    assert_eq!(app.invite(class, id).await["uses"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_up_invite_is_refused_with_410_and_creates_no_account() {
    let Setup {
        app,
        teacher,
        class,
    } = setup().await;
    let invite = app.create_invite(&teacher.token, class, "student", 1).await;
    let code = invite["code"].as_str().unwrap();
    let (status, body) = app.register(code, "first").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let users = app.user_count().await;

    let message = assert_field_error(
        &app.register(code, "second").await,
        410,
        "invite_used_up",
        "invite_code",
    );
    assert!(message.contains("maximum number of times (1)"), "{message}");
    assert_nothing_created(&app, "second", users).await;
    let now = app.invite(class, invite["id"].as_i64().unwrap()).await;
    assert_eq!(now["uses"], 1);
    assert_eq!(now["status"], "used_up");
    assert_eq!(
        app.members(class).await.len(),
        2,
        "the teacher and the first student"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_invite_is_refused_with_410_and_creates_no_account() {
    let Setup {
        app,
        teacher,
        class,
    } = setup().await;
    // The API cannot make a code that has already expired; write one to the store.
    let code = "EXPD-0000-0001";
    let mut tx = app.store.begin().await.unwrap();
    let id = tx
        .create_invite(&NewInvite {
            class_id: class,
            code,
            role: ClassRole::Student,
            max_uses: 10,
            expires_at: voxhub_store::now_s() - 60,
            created_by: teacher.id,
        })
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(app.invite(class, id).await["status"], "expired");
    let users = app.user_count().await;

    let message = assert_field_error(
        &app.register(code, "toolate").await,
        410,
        "invite_expired",
        "invite_code",
    );
    assert!(
        message.contains("expired") && message.contains("new code"),
        "{message}"
    );
    assert_nothing_created(&app, "toolate", users).await;
    assert_eq!(app.invite(class, id).await["uses"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_username_is_refused_with_409_and_the_invite_use_is_not_consumed() {
    let Setup {
        app,
        teacher,
        class,
    } = setup().await;
    let invite = app.create_invite(&teacher.token, class, "student", 1).await;
    let existing = app
        .named_user("alreadyhere", "Already Here", Role::Student)
        .await;
    let users = app.user_count().await;
    let before = app.stored_hash(existing.id).await;

    let message = assert_error(
        &app.register(invite["code"].as_str().unwrap(), "AlreadyHere")
            .await,
        409,
        "conflict",
    );
    assert!(
        message.contains("'alreadyhere' is already taken"),
        "{message}"
    );
    assert_eq!(app.user_count().await, users);
    assert_eq!(
        app.stored_hash(existing.id).await,
        before,
        "the existing account is untouched"
    );
    let now = app.invite(class, invite["id"].as_i64().unwrap()).await;
    assert_eq!(now["uses"], 0, "the use is not consumed");
    assert_eq!(now["status"], "active");
    assert_eq!(
        app.members(class).await.len(),
        1,
        "the existing account did not join the class"
    );
    // The single use is still there for someone else.
    let (status, body) = app
        .register(invite["code"].as_str().unwrap(), "someoneelse")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_registration_fields_are_refused_before_the_code_is_used() {
    let Setup {
        app,
        teacher,
        class,
    } = setup().await;
    let invite = app.create_invite(&teacher.token, class, "student", 1).await;
    let code = invite["code"].as_str().unwrap();
    let users = app.user_count().await;
    let register = |username: &str, password: &str, display_name: &str| {
        app.post(
            "",
            "/api/v1/auth/register",
            json!({"invite_code": code, "username": username, "password": password, "display_name": display_name}),
        )
    };
    assert_field_error(
        &register("x", "a long enough password", "X").await,
        422,
        "invalid_input",
        "username",
    );
    assert_field_error(
        &register("has space", "a long enough password", "X").await,
        422,
        "invalid_input",
        "username",
    );
    assert_field_error(
        &register("okname", "short", "X").await,
        422,
        "invalid_input",
        "password",
    );
    assert_field_error(
        &register("okname", "okname", "X").await,
        422,
        "invalid_input",
        "password",
    );
    assert_field_error(
        &register("okname", "a long enough password", "  ").await,
        422,
        "invalid_input",
        "display_name",
    );
    assert_eq!(app.user_count().await, users);
    assert_eq!(
        app.invite(class, invite["id"].as_i64().unwrap()).await["uses"],
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_codes_may_be_typed_in_lower_case_with_spaces_instead_of_dashes() {
    let Setup {
        app,
        teacher,
        class,
    } = setup().await;
    let invite = app.create_invite(&teacher.token, class, "student", 5).await;
    let code = invite["code"].as_str().unwrap();
    let typed = format!("  {} ", code.to_lowercase().replace('-', " "));
    let (status, body) = app.register(&typed, "casual").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let without_separators = code.replace('-', "").to_lowercase();
    let (status, body) = app.register(&without_separators, "compact").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        app.invite(class, invite["id"].as_i64().unwrap()).await["uses"],
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_creation_checks_the_number_of_uses_and_the_expiry() {
    let Setup {
        app,
        teacher,
        class,
    } = setup().await;
    let path = format!("/api/v1/classes/{class}/invites");
    for uses in [0, -1, 10_001] {
        let message = assert_field_error(
            &app.post(
                &teacher.token,
                &path,
                json!({"role": "student", "max_uses": uses}),
            )
            .await,
            422,
            "invalid_input",
            "max_uses",
        );
        assert!(message.contains("between 1 and 10000"), "{message}");
    }
    for expiry in ["soon", "0d", "-3d", "2y", ""] {
        let message = assert_field_error(
            &app.post(
                &teacher.token,
                &path,
                json!({"role": "student", "max_uses": 1, "expires_in": expiry}),
            )
            .await,
            422,
            "invalid_input",
            "expires_in",
        );
        assert!(
            message.contains("14d") || message.contains("longer than zero"),
            "{expiry}: {message}"
        );
    }
    let message = assert_field_error(
        &app.post(
            &teacher.token,
            &path,
            json!({"role": "student", "max_uses": 1, "expires_in": "400d"}),
        )
        .await,
        422,
        "invalid_input",
        "expires_in",
    );
    assert!(message.contains("at most a year"), "{message}");
    assert_error(
        &app.post(
            &teacher.token,
            &path,
            json!({"role": "admin", "max_uses": 1}),
        )
        .await,
        422,
        "invalid_body",
    );
    assert_eq!(
        app.get_ok(&teacher.token, &path).await,
        json!([]),
        "no invite was created"
    );
    // The default expiry is 14 days.
    let (status, invite) = app
        .post(
            &teacher.token,
            &path,
            json!({"role": "student", "max_uses": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{invite}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teacher_cannot_revoke_another_classes_invite_through_their_own_class() {
    let app = TestApp::spawn().await;
    let mine = app.user(Role::Teacher).await;
    let theirs = app.user(Role::Teacher).await;
    let my_class = app.create_class(&mine.token, "Mine").await;
    let their_class = app.create_class(&theirs.token, "Theirs").await;
    let invite = app
        .create_invite(&theirs.token, their_class, "student", 3)
        .await;
    let id = invite["id"].as_i64().unwrap();
    let reply = app
        .delete(
            &mine.token,
            &format!("/api/v1/classes/{my_class}/invites/{id}"),
        )
        .await;
    let message = assert_error(&reply, 404, "not_found");
    assert!(
        message.contains(&format!("no invite code with id {id}")),
        "{message}"
    );
    assert_eq!(app.invite(their_class, id).await["status"], "active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_an_invite_keeps_the_people_who_registered_with_it() {
    let Setup {
        app,
        teacher,
        class,
    } = setup().await;
    let invite = app.create_invite(&teacher.token, class, "student", 5).await;
    let (status, _) = app
        .register(invite["code"].as_str().unwrap(), "stayer")
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = app
        .delete(
            &teacher.token,
            &format!("/api/v1/classes/{class}/invites/{}", invite["id"]),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        app.members(class)
            .await
            .iter()
            .any(|m| m["username"] == "stayer")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_registrations_never_use_a_code_more_often_than_allowed() {
    let Setup {
        app,
        teacher,
        class,
    } = setup().await;
    let invite = app.create_invite(&teacher.token, class, "student", 2).await;
    let code = invite["code"].as_str().unwrap().to_string();
    let users = app.user_count().await;
    let attempts = (0..6).map(|i| {
        let app = &app;
        let code = code.clone();
        async move { app.register(&code, &format!("racer{i}")).await }
    });
    let replies = futures_join_all(attempts).await;
    let created = replies
        .iter()
        .filter(|(status, _)| *status == StatusCode::CREATED)
        .count();
    assert_eq!(created, 2, "{replies:?}");
    for reply in replies
        .iter()
        .filter(|(status, _)| *status != StatusCode::CREATED)
    {
        assert_error(reply, 410, "invite_used_up");
    }
    assert_eq!(app.user_count().await, users + 2);
    assert_eq!(
        app.invite(class, invite["id"].as_i64().unwrap()).await["uses"],
        2
    );
    assert_eq!(app.members(class).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_people_racing_for_one_username_get_one_account() {
    let Setup {
        app,
        teacher,
        class,
    } = setup().await;
    let invite = app.create_invite(&teacher.token, class, "student", 5).await;
    let code = invite["code"].as_str().unwrap();
    let (first, second) = tokio::join!(
        app.register(code, "samename"),
        app.register(code, "samename")
    );
    let mut statuses = [first.0.as_u16(), second.0.as_u16()];
    statuses.sort();
    assert_eq!(statuses, [201, 409], "{first:?} {second:?}");
    assert_eq!(
        app.invite(class, invite["id"].as_i64().unwrap()).await["uses"],
        1,
        "the loser's use is not consumed"
    );
}

/// Runs futures concurrently on this task (no extra dependency needed).
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futures.map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in pinned.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_student_who_teaches_a_class_cannot_mint_platform_teachers_through_invites() {
    let Setup { app, class, .. } = setup().await;
    let student = app.user(Role::Student).await;
    app.add_member(&app.admin.token, class, &student.username, "teacher")
        .await;
    let (status, invite) = app
        .post(
            &student.token,
            &format!("/api/v1/classes/{class}/invites"),
            json!({"role": "teacher", "max_uses": 1}),
        )
        .await;
    if status == StatusCode::CREATED {
        let (status, user) = app
            .register(invite["code"].as_str().unwrap(), "minted")
            .await;
        assert!(
            status != StatusCode::CREATED || user["role"] != "teacher",
            "a platform student minted a platform teacher: {user}"
        );
    } else {
        assert_forbidden(&(status, invite));
    }
}
