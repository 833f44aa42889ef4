//! Accounts: admins manage them; everyone else sees only their own.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use voxhub_core::role::Role;
use voxhub_store::tokens::TokenKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_creates_an_account_that_can_then_log_in() {
    let app = TestApp::spawn().await;
    let (status, user) = app
        .post(
            &app.admin.token,
            "/api/v1/users",
            json!({"username": "Grace.Hopper", "display_name": "Grace Hopper", "role": "teacher", "password": "a first password"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    assert_eq!(
        user["username"], "grace.hopper",
        "usernames are stored lower-case"
    );
    assert_eq!(user["display_name"], "Grace Hopper");
    assert_eq!(user["role"], "teacher");
    assert_eq!(user["disabled"], false);
    assert!(
        user.get("password").is_none() && user.get("password_hash").is_none(),
        "{user}"
    );

    let token = app.login("grace.hopper", "a first password").await;
    assert_eq!(
        app.get_ok(&token, "/api/v1/me").await["user"]["role"],
        "teacher"
    );

    let created = app.audit("action=user.create&actor=admin").await;
    assert_eq!(created.len(), 1, "{created:?}");
    assert!(
        created[0]["target"]
            .as_str()
            .unwrap()
            .contains("grace.hopper")
    );
    assert_eq!(created[0]["admin_power"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_lists_accounts_and_searches_by_username_or_display_name() {
    let app = TestApp::spawn().await;
    app.named_user("ada", "Ada Lovelace", Role::Teacher).await;
    app.named_user("alan", "Alan Turing", Role::Student).await;
    app.named_user("edsger", "Edsger Dijkstra", Role::Student)
        .await;

    let all = app.get_ok(&app.admin.token, "/api/v1/users").await;
    let names: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["ada", "admin", "alan", "edsger"],
        "sorted by username"
    );

    let by_display = app.get_ok(&app.admin.token, "/api/v1/users?q=turing").await;
    assert_eq!(by_display.as_array().unwrap().len(), 1, "{by_display}");
    assert_eq!(by_display[0]["username"], "alan");
    let by_username = app.get_ok(&app.admin.token, "/api/v1/users?q=AD").await;
    let names: Vec<&str> = by_username
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ada", "admin"]);
    assert_eq!(
        app.get_ok(&app.admin.token, "/api/v1/users?q=nobody").await,
        json!([])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_search_treats_percent_and_underscore_as_plain_text() {
    let app = TestApp::spawn().await;
    app.named_user("alan", "Alan Turing", Role::Student).await;
    app.named_user("a_b", "Underscore", Role::Student).await;
    assert_eq!(
        app.get_ok(&app.admin.token, "/api/v1/users?q=%25").await,
        json!([])
    );
    let underscore = app.get_ok(&app.admin.token, "/api/v1/users?q=a_").await;
    let names: Vec<&str> = underscore
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a_b"], "'_' matches only itself");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_disables_and_enables_an_account_and_both_are_audited() {
    let app = TestApp::spawn().await;
    let student = app.user(Role::Student).await;
    let path = format!("/api/v1/users/{}", student.id);
    let (status, body) = app
        .patch(&app.admin.token, &path, json!({"disabled": true}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.get_ok(&app.admin.token, &path).await["disabled"], true);
    assert_error(
        &app.get(&student.token, "/api/v1/me").await,
        401,
        "token_revoked",
    );

    let (status, body) = app
        .patch(&app.admin.token, &path, json!({"disabled": false}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["disabled"], false);
    app.login(&student.username, PASSWORD).await;

    assert_eq!(app.audit("action=user.disable").await.len(), 1);
    assert_eq!(app.audit("action=user.enable").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_resets_a_password_and_the_accounts_sessions_end() {
    let app = TestApp::spawn().await;
    let student = app.user(Role::Student).await;
    let script_token = app
        .token_for(student.id, TokenKind::Api, voxhub_store::now_s() + 3600)
        .await;
    let (status, body) = app
        .post(
            &app.admin.token,
            &format!("/api/v1/users/{}/password", student.id),
            json!({"password": "set by the admin"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], student.id);
    assert_error(
        &app.get(&student.token, "/api/v1/me").await,
        401,
        "token_revoked",
    );
    assert_error(
        &app.get(&script_token, "/api/v1/me").await,
        401,
        "token_revoked",
    );
    assert_error(
        &app.try_login(&student.username, PASSWORD).await.pair(),
        401,
        "wrong_credentials",
    );
    app.login(&student.username, "set by the admin").await;
    let resets = app.audit("action=user.password_reset").await;
    assert_eq!(resets.len(), 1);
    assert!(
        resets[0]["detail"]
            .as_str()
            .unwrap()
            .contains("2 sessions and API tokens revoked"),
        "{resets:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_changes_a_role_and_it_takes_effect_on_the_next_request() {
    let app = TestApp::spawn().await;
    let student = app.user(Role::Student).await;
    assert_forbidden(
        &app.post(
            &student.token,
            "/api/v1/classes",
            json!({"name": "X", "starts_on": "2026-01-01", "ends_on": "2026-02-01"}),
        )
        .await,
    );
    let (status, body) = app
        .patch(
            &app.admin.token,
            &format!("/api/v1/users/{}", student.id),
            json!({"role": "teacher"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["role"], "teacher");
    app.create_class(&student.token, "Now I teach").await;
    let updates = app.audit("action=user.update").await;
    assert!(
        updates[0]["detail"]
            .as_str()
            .unwrap()
            .contains("role student -> teacher"),
        "{updates:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_cannot_disable_their_own_account() {
    let app = TestApp::spawn().await;
    let reply = app
        .patch(
            &app.admin.token,
            &format!("/api/v1/users/{}", app.admin.id),
            json!({"disabled": true}),
        )
        .await;
    let message = assert_error(&reply, 409, "conflict");
    assert!(
        message.contains("cannot disable your own account"),
        "{message}"
    );
    let me = app.get_ok(&app.admin.token, "/api/v1/me").await;
    assert_eq!(me["user"]["disabled"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_cannot_take_away_their_own_admin_role() {
    let app = TestApp::spawn().await;
    for role in ["teacher", "student"] {
        let reply = app
            .patch(
                &app.admin.token,
                &format!("/api/v1/users/{}", app.admin.id),
                json!({"role": role}),
            )
            .await;
        let message = assert_error(&reply, 409, "conflict");
        assert!(message.contains("own admin role"), "{message}");
    }
    assert_eq!(
        app.get_ok(&app.admin.token, "/api/v1/me").await["user"]["role"],
        "admin"
    );
    // Keeping the role, or changing only the display name, is fine.
    let (status, body) = app
        .patch(
            &app.admin.token,
            &format!("/api/v1/users/{}", app.admin.id),
            json!({"role": "admin", "display_name": "Root"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["display_name"], "Root");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_admin_can_disable_an_admin() {
    let app = TestApp::spawn().await;
    let second = app.user(Role::Admin).await;
    let (status, body) = app
        .patch(
            &second.token,
            &format!("/api/v1/users/{}", app.admin.id),
            json!({"disabled": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_error(
        &app.get(&app.admin.token, "/api/v1/me").await,
        401,
        "token_revoked",
    );
}

/// Everything only an admin may do with accounts, tried by a teacher and a student: each
/// is refused with 403 and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teachers_and_students_cannot_manage_accounts() {
    let app = TestApp::spawn().await;
    let victim = app.user(Role::Student).await;
    for role in [Role::Teacher, Role::Student] {
        let caller = app.user(role).await;
        let users_before = app.user_count().await;
        let victim_path = format!("/api/v1/users/{}", victim.id);
        let victim_hash = app.stored_hash(victim.id).await;

        let message = assert_forbidden(&app.get(&caller.token, "/api/v1/users").await);
        assert!(message.contains("only an admin"), "{message}");
        assert_forbidden(&app.get(&caller.token, "/api/v1/users?q=adm").await);
        assert_forbidden(
            &app.post(
                &caller.token,
                "/api/v1/users",
                json!({"username": "sneaky", "display_name": "Sneaky", "role": "admin", "password": "a long password"}),
            )
            .await,
        );
        assert_forbidden(
            &app.patch(&caller.token, &victim_path, json!({"disabled": true}))
                .await,
        );
        assert_forbidden(
            &app.patch(&caller.token, &victim_path, json!({"role": "teacher"}))
                .await,
        );
        assert_forbidden(
            &app.patch(
                &caller.token,
                &victim_path,
                json!({"display_name": "Renamed"}),
            )
            .await,
        );
        assert_forbidden(
            &app.post(
                &caller.token,
                &format!("{victim_path}/password"),
                json!({"password": "taken over now"}),
            )
            .await,
        );
        assert_forbidden(
            &app.patch(
                &caller.token,
                &format!("/api/v1/users/{}", app.admin.id),
                json!({"disabled": true}),
            )
            .await,
        );

        assert_eq!(
            app.user_count().await,
            users_before,
            "no account was created"
        );
        assert!(!app.user_exists("sneaky").await);
        let victim_now = app.get_ok(&app.admin.token, &victim_path).await;
        assert_eq!(victim_now["disabled"], false);
        assert_eq!(victim_now["role"], "student");
        assert!(
            victim_now["display_name"]
                .as_str()
                .unwrap()
                .starts_with("Test")
        );
        assert_eq!(
            app.stored_hash(victim.id).await,
            victim_hash,
            "the password did not change"
        );
        app.get_ok(&victim.token, "/api/v1/me").await;
        assert_eq!(
            app.get_ok(&app.admin.token, "/api/v1/me").await["user"]["disabled"],
            false
        );

        let denied = app
            .audit(&format!("actor={}&outcome=denied", caller.username))
            .await;
        assert!(
            denied.len() >= 7,
            "every refused change is audited: {denied:?}"
        );
        for action in [
            "user.list",
            "user.create",
            "user.update",
            "user.password_reset",
        ] {
            assert!(
                !with_action(&denied, action).is_empty(),
                "{action} refusal is audited: {denied:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_but_an_admin_can_raise_their_own_role_or_enable_themself() {
    let app = TestApp::spawn().await;
    for role in [Role::Teacher, Role::Student] {
        let caller = app.user(role).await;
        let own = format!("/api/v1/users/{}", caller.id);
        let message = assert_forbidden(
            &app.patch(&caller.token, &own, json!({"role": "admin"}))
                .await,
        );
        assert!(message.contains("only an admin"), "{message}");
        assert_forbidden(
            &app.patch(
                &caller.token,
                &own,
                json!({"display_name": "Me", "role": "admin"}),
            )
            .await,
        );
        assert_forbidden(
            &app.patch(&caller.token, &own, json!({"disabled": false}))
                .await,
        );
        assert_forbidden(
            &app.post(
                &caller.token,
                &format!("{own}/password"),
                json!({"password": "without the old one"}),
            )
            .await,
        );
        let me = app.get_ok(&caller.token, "/api/v1/me").await;
        assert_eq!(me["user"]["role"], role.as_str());
        assert!(
            me["user"]["display_name"]
                .as_str()
                .unwrap()
                .starts_with("Test"),
            "the display name did not change either"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_student_cannot_read_another_account_but_can_read_their_own() {
    let app = TestApp::spawn().await;
    let student = app.user(Role::Student).await;
    let classmate = app.user(Role::Student).await;
    let teacher = app.user(Role::Teacher).await;

    let own = app
        .get_ok(&student.token, &format!("/api/v1/users/{}", student.id))
        .await;
    assert_eq!(own["username"], student.username);

    for other in [classmate.id, teacher.id, app.admin.id] {
        let reply = app
            .get(&student.token, &format!("/api/v1/users/{other}"))
            .await;
        let message = assert_forbidden(&reply);
        assert!(message.contains("your own account"), "{message}");
        assert!(reply.1.get("username").is_none());
    }
    // A teacher cannot read a student's account either.
    assert_forbidden(
        &app.get(&teacher.token, &format!("/api/v1/users/{}", student.id))
            .await,
    );
    // An admin can.
    assert_eq!(
        app.get_ok(&app.admin.token, &format!("/api/v1/users/{}", student.id))
            .await["id"],
        student.id
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_change_their_own_display_name_but_not_someone_elses() {
    let app = TestApp::spawn().await;
    let student = app.user(Role::Student).await;
    let classmate = app.user(Role::Student).await;
    let (status, body) = app
        .patch(
            &student.token,
            &format!("/api/v1/users/{}", student.id),
            json!({"display_name": " Dr. Ümit "}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["display_name"], "Dr. Ümit");
    assert_eq!(body["role"], "student");

    assert_forbidden(
        &app.patch(
            &student.token,
            &format!("/api/v1/users/{}", classmate.id),
            json!({"display_name": "Hacked"}),
        )
        .await,
    );
    let classmate_now: Value = app.get_ok(&classmate.token, "/api/v1/me").await;
    assert_ne!(classmate_now["user"]["display_name"], "Hacked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_username_is_refused_with_409_naming_it() {
    let app = TestApp::spawn().await;
    app.named_user("taken", "Taken", Role::Student).await;
    let count = app.user_count().await;
    for username in ["taken", "TAKEN", " Taken "] {
        let reply = app
            .post(
                &app.admin.token,
                "/api/v1/users",
                json!({"username": username, "display_name": "Another", "role": "student", "password": "a long password"}),
            )
            .await;
        let message = assert_error(&reply, 409, "conflict");
        assert!(
            message.contains("'taken'") && message.contains("already taken"),
            "{message}"
        );
    }
    assert_eq!(app.user_count().await, count);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_account_ids_are_404_with_a_message_for_admins() {
    let app = TestApp::spawn().await;
    let message = assert_error(
        &app.get(&app.admin.token, "/api/v1/users/9999").await,
        404,
        "not_found",
    );
    assert!(message.contains("9999"), "{message}");
    assert_error(
        &app.patch(
            &app.admin.token,
            "/api/v1/users/9999",
            json!({"disabled": true}),
        )
        .await,
        404,
        "not_found",
    );
    assert_error(
        &app.patch(
            &app.admin.token,
            "/api/v1/users/-1",
            json!({"display_name": "x"}),
        )
        .await,
        404,
        "not_found",
    );
    assert_error(
        &app.post(
            &app.admin.token,
            "/api/v1/users/9999/password",
            json!({"password": "a long password"}),
        )
        .await,
        404,
        "not_found",
    );
}
