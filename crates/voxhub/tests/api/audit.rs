//! The audit log: what is recorded, who may read it, and that tampering with the database
//! is found by `voxhub audit verify`.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;
use voxhub_core::role::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_are_audited_with_their_outcome_and_source_address() {
    let app = TestApp::spawn().await;
    app.login("admin", PASSWORD).await;
    app.try_login("admin", "not my password").await;
    app.try_login("Mallory", "not my password").await;

    let logins = app.audit("action=auth.login").await;
    assert_eq!(logins.len(), 3, "{logins:?}");
    let (unknown, wrong, success) = (&logins[0], &logins[1], &logins[2]);
    assert_eq!(success["outcome"], "success");
    assert_eq!(success["actor_name"], "admin");
    assert_eq!(success["actor_id"], app.admin.id);
    assert_eq!(success["source"], "127.0.0.1");
    assert_eq!(success["target"], format!("user:{} admin", app.admin.id));

    assert_eq!(wrong["outcome"], "failure");
    assert_eq!(wrong["actor_name"], "admin");
    assert_eq!(wrong["source"], "127.0.0.1");
    assert_eq!(wrong["detail"], "wrong username or password");
    assert!(
        wrong["target"]
            .as_str()
            .unwrap()
            .starts_with(&format!("user:{}", app.admin.id)),
        "{wrong}"
    );

    assert_eq!(unknown["outcome"], "failure");
    assert_eq!(
        unknown["actor_name"], "mallory",
        "the name as typed (lower-cased)"
    );
    assert_eq!(unknown["actor_id"], Value::Null);
    assert_eq!(unknown["target"], "user:unknown");
    assert_eq!(unknown["source"], "127.0.0.1");
    assert!(
        !logins
            .iter()
            .any(|e| e.to_string().contains("not my password")),
        "passwords are never logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_to_accounts_classes_invites_and_tokens_are_audited() {
    let app = TestApp::spawn().await;
    let admin = app.admin.token.clone();
    let teacher = app.user(Role::Teacher).await;
    let created = app.create_user("newstudent", Role::Student).await;
    let student_id = created["id"].as_i64().unwrap();
    app.patch(
        &admin,
        &format!("/api/v1/users/{student_id}"),
        json!({"display_name": "Renamed"}),
    )
    .await;
    app.patch(
        &admin,
        &format!("/api/v1/users/{student_id}"),
        json!({"disabled": true}),
    )
    .await;
    app.patch(
        &admin,
        &format!("/api/v1/users/{student_id}"),
        json!({"disabled": false}),
    )
    .await;
    app.post(
        &admin,
        &format!("/api/v1/users/{student_id}/password"),
        json!({"password": "another long one"}),
    )
    .await;
    let class = app.create_class(&teacher.token, "Audited").await;
    app.patch(
        &teacher.token,
        &format!("/api/v1/classes/{class}"),
        json!({"description": "now described"}),
    )
    .await;
    app.add_member(&teacher.token, class, "newstudent", "student")
        .await;
    app.delete(
        &teacher.token,
        &format!("/api/v1/classes/{class}/members/{student_id}"),
    )
    .await;
    let invite = app.create_invite(&teacher.token, class, "student", 2).await;
    let (status, _) = app
        .register(invite["code"].as_str().unwrap(), "joiner")
        .await;
    assert_eq!(status, StatusCode::CREATED);
    app.delete(
        &teacher.token,
        &format!("/api/v1/classes/{class}/invites/{}", invite["id"]),
    )
    .await;
    let (_, token) = app
        .post(&teacher.token, "/api/v1/tokens", json!({"name": "t"}))
        .await;
    app.delete(
        &teacher.token,
        &format!("/api/v1/tokens/{}", token["token"]["id"]),
    )
    .await;
    let session = app.login(&teacher.username, PASSWORD).await;
    app.post(&session, "/api/v1/auth/logout", json!({})).await;
    app.post(
        &teacher.token,
        "/api/v1/me/password",
        json!({"current_password": PASSWORD, "new_password": "teacher's new one"}),
    )
    .await;

    let entries = app.audit("outcome=success").await;
    let actions: BTreeSet<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for expected in [
        "user.create",
        "user.update",
        "user.disable",
        "user.enable",
        "user.password_reset",
        "user.password_change",
        "class.create",
        "class.update",
        "class.member_add",
        "class.member_remove",
        "invite.create",
        "invite.revoke",
        "auth.register",
        "auth.login",
        "auth.logout",
        "token.create",
        "token.revoke",
    ] {
        assert!(
            actions.contains(expected),
            "{expected} is audited; found {actions:?}"
        );
    }
    assert!(
        entries
            .iter()
            .all(|e| e["source"] == "127.0.0.1" || e["source"] == "local"),
        "{entries:?}"
    );
    let renamed = &with_action(&entries, "user.update")[0];
    assert!(
        renamed["detail"].as_str().unwrap().contains("'Renamed'"),
        "{renamed}"
    );
    assert!(
        !entries
            .iter()
            .any(|e| e.to_string().contains("another long one")),
        "no password in the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_attempts_are_audited_with_outcome_denied_and_the_reason() {
    let app = TestApp::spawn().await;
    let student = app.user(Role::Student).await;
    app.post(
        &student.token,
        "/api/v1/classes",
        json!({"name": "x", "starts_on": "2026-01-01", "ends_on": "2026-01-02"}),
    )
    .await;
    app.get(&student.token, "/api/v1/users").await;
    app.get(&student.token, "/api/v1/audit").await;
    app.get(&student.token, "/api/v1/audit/verify").await;
    app.patch(
        &student.token,
        &format!("/api/v1/users/{}", student.id),
        json!({"role": "admin"}),
    )
    .await;

    let denied = app
        .audit(&format!("actor={}&outcome=denied", student.username))
        .await;
    let actions: Vec<&str> = denied
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "user.update",
            "audit.verify",
            "audit.list",
            "user.list",
            "class.create"
        ],
        "{denied:?}"
    );
    for entry in &denied {
        assert_eq!(entry["actor_id"], student.id);
        assert_eq!(entry["source"], "127.0.0.1");
        assert!(
            entry["detail"].as_str().unwrap().len() > 10,
            "the reason is recorded: {entry}"
        );
        assert_eq!(entry["admin_power"], false);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_filters_the_log_by_actor_action_outcome_and_target() {
    let app = TestApp::spawn().await;
    let teacher = app.user(Role::Teacher).await;
    let student = app.user(Role::Student).await;
    let first = app.create_class(&teacher.token, "First").await;
    app.create_class(&teacher.token, "Second").await;
    app.get(&student.token, "/api/v1/users").await;
    app.try_login(&student.username, "wrong password here")
        .await;

    let by_actor = app
        .audit(&format!("actor={}", teacher.username.to_uppercase()))
        .await;
    assert_eq!(
        by_actor.len(),
        2,
        "actor names are not case-sensitive: {by_actor:?}"
    );
    assert!(by_actor.iter().all(|e| e["actor_name"] == teacher.username));

    let by_action = app.audit("action=class.").await;
    assert_eq!(by_action.len(), 2);
    assert_eq!(app.audit("action=class.create").await.len(), 2);
    assert_eq!(
        app.audit("action=class.cre").await.len(),
        2,
        "an action prefix matches"
    );
    assert_eq!(app.audit("action=%").await.len(), 0, "% is not a wildcard");

    let denied = app.audit("outcome=denied").await;
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["action"], "user.list");
    let failures = app.audit("outcome=failure").await;
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["action"], "auth.login");

    let by_target = app.audit(&format!("target=class:{first}")).await;
    assert_eq!(by_target.len(), 1, "{by_target:?}");
    let combined = app
        .audit(&format!(
            "actor={}&action=class.&outcome=denied",
            teacher.username
        ))
        .await;
    assert!(combined.is_empty());

    // Paging: newest first, `before` continues where a page ended.
    let page = app.get_ok(&app.admin.token, "/api/v1/audit?limit=2").await;
    let page = page.as_array().unwrap();
    assert_eq!(page.len(), 2);
    assert!(page[0]["seq"].as_i64() > page[1]["seq"].as_i64());
    let next = app
        .get_ok(
            &app.admin.token,
            &format!("/api/v1/audit?limit=2&before={}", page[1]["seq"]),
        )
        .await;
    assert_eq!(
        next[0]["seq"].as_i64().unwrap(),
        page[1]["seq"].as_i64().unwrap() - 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_can_read_or_verify_the_audit_log() {
    let app = TestApp::spawn().await;
    for role in [Role::Teacher, Role::Student] {
        let caller = app.user(role).await;
        let reply = app.get(&caller.token, "/api/v1/audit").await;
        let message = assert_forbidden(&reply);
        assert!(
            message.contains("only an admin can read the audit log"),
            "{message}"
        );
        assert!(reply.1.get(0).is_none());
        let message = assert_forbidden(&app.get(&caller.token, "/api/v1/audit/verify").await);
        assert!(message.contains("only an admin"), "{message}");
        assert_forbidden(&app.get(&caller.token, "/api/v1/audit?actor=admin").await);
    }
    assert_error(&app.get("", "/api/v1/audit").await, 401, "unauthenticated");
    assert_error(
        &app.get("", "/api/v1/audit/verify").await,
        401,
        "unauthenticated",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_audit_filters_are_refused_with_400() {
    let app = TestApp::spawn().await;
    let admin = &app.admin.token;
    for query in [
        "limit=0",
        "limit=1001",
        "limit=-5",
        "limit=abc",
        "outcome=maybe",
        "before=soon",
        "colour=red",
    ] {
        let reply = app.get(admin, &format!("/api/v1/audit?{query}")).await;
        let message = assert_error(&reply, 400, "invalid_query");
        assert!(!message.is_empty(), "{query}");
    }
    let message = assert_error(
        &app.get(admin, "/api/v1/audit?limit=0").await,
        400,
        "invalid_query",
    );
    assert!(message.contains("between 1 and 1000"), "{message}");
    let message = assert_error(
        &app.get(admin, "/api/v1/audit?colour=red").await,
        400,
        "invalid_query",
    );
    assert!(
        message.contains("colour"),
        "the unknown parameter is named: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untouched_log_verifies_intact_through_the_api() {
    let app = TestApp::spawn().await;
    let teacher = app.user(Role::Teacher).await;
    app.create_class(&teacher.token, "A").await;
    app.create_class(&teacher.token, "B").await;
    let report = app.get_ok(&app.admin.token, "/api/v1/audit/verify").await;
    // The verification and the listing below are recorded after they read the log.
    let newest = app.audit("limit=2").await;
    assert_eq!(newest[0]["action"], "audit.verify", "{newest:?}");
    assert_eq!(report["intact"], true, "{report}");
    assert_eq!(report["entries_checked"], newest[1]["seq"]);
    assert_eq!(report["head_hash"], newest[1]["hash"]);
    assert_eq!(report["problem"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_reads_of_other_peoples_things_are_audited_too() {
    let app = TestApp::spawn().await;
    let teacher = app.user(Role::Teacher).await;
    let student = app.user(Role::Student).await;
    let class = app.create_class(&teacher.token, "Private").await;
    assert_forbidden(
        &app.get(&student.token, &format!("/api/v1/users/{}", teacher.id))
            .await,
    );
    assert_forbidden(
        &app.get(&student.token, &format!("/api/v1/classes/{class}"))
            .await,
    );
    assert_forbidden(
        &app.get(&student.token, &format!("/api/v1/classes/{class}/members"))
            .await,
    );
    assert_forbidden(
        &app.get(&student.token, &format!("/api/v1/classes/{class}/invites"))
            .await,
    );
    let denied = app
        .audit(&format!("actor={}&outcome=denied", student.username))
        .await;
    assert_eq!(denied.len(), 4, "each refusal is recorded: {denied:?}");
}

// ---------------------------------------------------------------------------------------
// Tampering with the database file
// ---------------------------------------------------------------------------------------

/// An app with a few audit entries, stopped; returns its data directory and the last seq.
async fn stopped_app_with_entries() -> (tempfile::TempDir, i64) {
    let app = TestApp::spawn().await;
    for name in ["One", "Two", "Three", "Four"] {
        app.create_class(&app.admin.token, name).await;
    }
    let newest = app.audit("limit=1").await[0]["seq"].as_i64().unwrap();
    assert_eq!(newest, 5, "the first admin plus four classes");
    // Reading the log is itself a use of admin power, recorded as entry 6.
    let last = newest + 1;
    let (dir, _) = app.stop().await;
    (dir, last)
}

async fn verify_with_binary(data_dir: &Path, json: bool) -> CliOutput {
    let config = tempfile::tempdir().unwrap();
    let dir = data_dir.to_str().unwrap();
    let mut args = vec!["audit", "verify", "--data-dir", dir];
    if json {
        args.push("--json");
    }
    run_voxhub(config.path(), &args, None).await
}

fn drop_append_only_triggers(db: &Path) {
    let (ok, output) = sqlite3(
        db,
        "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;",
    );
    assert!(ok, "dropping the triggers: {output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_refuses_to_change_or_delete_audit_entries() {
    let (dir, _) = stopped_app_with_entries().await;
    let db = dir.path().join(DATABASE_FILE);
    let (ok, output) = sqlite3(
        &db,
        "UPDATE audit_log SET actor_name = 'mallory' WHERE seq = 2;",
    );
    assert!(!ok && output.contains("append-only"), "{output}");
    let (ok, output) = sqlite3(&db, "DELETE FROM audit_log WHERE seq = 2;");
    assert!(!ok && output.contains("append-only"), "{output}");
    let verified = verify_with_binary(dir.path(), false).await;
    verified.assert_success();
    assert!(
        verified.stdout.contains("intact") && verified.stdout.contains("6 entries"),
        "{}",
        verified.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_altered_entry_is_named_by_audit_verify() {
    let (dir, _) = stopped_app_with_entries().await;
    let db = dir.path().join(DATABASE_FILE);
    drop_append_only_triggers(&db);
    let (ok, output) = sqlite3(
        &db,
        "UPDATE audit_log SET actor_name = 'mallory' WHERE seq = 3;",
    );
    assert!(ok, "{output}");

    let verified = verify_with_binary(dir.path(), false).await;
    assert_eq!(
        verified.code,
        Some(3),
        "tampering exits with 3: {verified:?}"
    );
    assert!(verified.stdout.contains("tampered"), "{}", verified.stdout);
    assert!(
        verified.stdout.contains("entry 3 was altered"),
        "{}",
        verified.stdout
    );

    let as_json = verify_with_binary(dir.path(), true).await;
    assert_eq!(as_json.code, Some(3));
    let report: Value = serde_json::from_str(&as_json.stdout).expect("JSON report");
    assert_eq!(report["intact"], false);
    assert!(
        report["problem"].as_str().unwrap().contains("entry 3"),
        "{report}"
    );

    // A server on the altered database reports the same through the API.
    let app = TestApp::spawn_on(dir).await;
    let report = app.get_ok(&app.admin.token, "/api/v1/audit/verify").await;
    assert_eq!(report["intact"], false, "{report}");
    assert!(
        report["problem"]
            .as_str()
            .unwrap()
            .contains("entry 3 was altered"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_entry_in_the_middle_is_named_by_audit_verify() {
    let (dir, _) = stopped_app_with_entries().await;
    let db = dir.path().join(DATABASE_FILE);
    drop_append_only_triggers(&db);
    let (ok, output) = sqlite3(&db, "DELETE FROM audit_log WHERE seq = 3;");
    assert!(ok, "{output}");
    let verified = verify_with_binary(dir.path(), false).await;
    assert_eq!(verified.code, Some(3), "{verified:?}");
    assert!(
        verified.stdout.contains("entry 3 was removed"),
        "{}",
        verified.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_last_entries_is_reported_by_audit_verify() {
    let (dir, last) = stopped_app_with_entries().await;
    let db = dir.path().join(DATABASE_FILE);
    drop_append_only_triggers(&db);
    let (ok, output) = sqlite3(&db, &format!("DELETE FROM audit_log WHERE seq = {last};"));
    assert!(ok, "{output}");
    let verified = verify_with_binary(dir.path(), false).await;
    assert_eq!(verified.code, Some(3), "{verified:?}");
    assert!(
        verified.stdout.contains("last entries were removed"),
        "{}",
        verified.stdout
    );
    assert!(
        verified
            .stdout
            .contains(&format!("entry {last} was written")),
        "{}",
        verified.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_without_a_database_says_where_it_looked() {
    let empty = tempfile::tempdir().unwrap();
    let verified = verify_with_binary(empty.path(), false).await;
    assert_ne!(verified.code, Some(0));
    assert!(
        verified.stderr.contains("no voxhub database"),
        "{}",
        verified.stderr
    );
}
