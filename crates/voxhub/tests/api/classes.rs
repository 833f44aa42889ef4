//! Classes and their members: teachers run their own classes, students see theirs, admins
//! see everything.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use voxhub_core::role::Role;

fn class_body(name: &str) -> Value {
    json!({"name": name, "description": "Weekly lab", "starts_on": "2026-09-01", "ends_on": "2027-01-31"})
}

fn usernames(members: &[Value]) -> Vec<String> {
    members
        .iter()
        .map(|m| m["username"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teacher_creates_a_class_and_becomes_its_teacher() {
    let app = TestApp::spawn().await;
    let teacher = app.user(Role::Teacher).await;
    let (status, class) = app
        .post(
            &teacher.token,
            "/api/v1/classes",
            class_body("  Anatomy 1 "),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{class}");
    assert_eq!(class["name"], "Anatomy 1");
    assert_eq!(class["description"], "Weekly lab");
    assert_eq!(class["starts_on"], "2026-09-01");
    assert_eq!(class["ends_on"], "2027-01-31");
    assert_eq!(class["my_role"], "teacher");
    assert_eq!(class["teacher_count"], 1);
    assert_eq!(class["student_count"], 0);
    assert_eq!(class["created_by"], teacher.id);
    let id = class["id"].as_i64().unwrap();

    let mine = app.get_ok(&teacher.token, "/api/v1/classes").await;
    assert_eq!(mine.as_array().unwrap().len(), 1);
    let members = app.members(id).await;
    assert_eq!(usernames(&members), std::slice::from_ref(&teacher.username));
    assert_eq!(members[0]["role"], "teacher");
    assert_eq!(members[0]["added_by"], teacher.username);

    let created = app.audit("action=class.create").await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["actor_name"], teacher.username);
    assert!(created[0]["target"].as_str().unwrap().contains("Anatomy 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_creates_a_class_without_becoming_its_teacher() {
    let app = TestApp::spawn().await;
    let (status, class) = app
        .post(
            &app.admin.token,
            "/api/v1/classes",
            class_body("Run by others"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{class}");
    assert_eq!(class["my_role"], Value::Null);
    assert_eq!(class["teacher_count"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_student_cannot_create_a_class() {
    let app = TestApp::spawn().await;
    let student = app.user(Role::Student).await;
    let message = assert_forbidden(
        &app.post(
            &student.token,
            "/api/v1/classes",
            class_body("My own class"),
        )
        .await,
    );
    assert!(
        message.contains("students cannot create classes"),
        "{message}"
    );
    assert_eq!(
        app.get_ok(&app.admin.token, "/api/v1/classes").await,
        json!([]),
        "no class was created"
    );
    assert_eq!(
        app.get_ok(&student.token, "/api/v1/me").await["classes"],
        json!([])
    );
    let denied = app.audit("action=class.create&outcome=denied").await;
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["actor_name"], student.username);
}

/// A teacher who does not teach a class can neither see nor change it, its members or its
/// invite codes; every attempt leaves the class as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teacher_cannot_read_or_change_a_class_that_is_not_theirs() {
    let app = TestApp::spawn().await;
    let owner = app.user(Role::Teacher).await;
    let outsider = app.user(Role::Teacher).await;
    let student = app.user(Role::Student).await;
    let class = app.create_class(&owner.token, "Owned").await;
    app.add_member(&owner.token, class, &student.username, "student")
        .await;
    let invite = app.create_invite(&owner.token, class, "student", 5).await;
    let invite_id = invite["id"].as_i64().unwrap();
    let base = format!("/api/v1/classes/{class}");

    let message = assert_forbidden(&app.get(&outsider.token, &base).await);
    assert!(message.contains("not a member of this class"), "{message}");
    assert_forbidden(&app.get(&outsider.token, &format!("{base}/members")).await);
    let message = assert_forbidden(&app.get(&outsider.token, &format!("{base}/invites")).await);
    assert!(
        message.contains("only the teachers of 'Owned'"),
        "{message}"
    );
    let message = assert_forbidden(
        &app.patch(&outsider.token, &base, json!({"name": "Taken over"}))
            .await,
    );
    assert!(message.contains("not a teacher of this class"), "{message}");
    assert_forbidden(
        &app.post(
            &outsider.token,
            &format!("{base}/members"),
            json!({"username": outsider.username, "role": "teacher"}),
        )
        .await,
    );
    assert_forbidden(
        &app.post(
            &outsider.token,
            &format!("{base}/members"),
            json!({"username": student.username, "role": "student"}),
        )
        .await,
    );
    assert_forbidden(
        &app.delete(&outsider.token, &format!("{base}/members/{}", student.id))
            .await,
    );
    assert_forbidden(
        &app.delete(&outsider.token, &format!("{base}/members/{}", owner.id))
            .await,
    );
    assert_forbidden(
        &app.post(
            &outsider.token,
            &format!("{base}/invites"),
            json!({"role": "teacher", "max_uses": 1}),
        )
        .await,
    );
    assert_forbidden(
        &app.delete(&outsider.token, &format!("{base}/invites/{invite_id}"))
            .await,
    );

    let now = app.get_ok(&app.admin.token, &base).await;
    assert_eq!(now["name"], "Owned");
    assert_eq!(
        usernames(&app.members(class).await),
        [owner.username.clone(), student.username.clone()]
    );
    let invites = app
        .get_ok(&app.admin.token, &format!("{base}/invites"))
        .await;
    assert_eq!(
        invites.as_array().unwrap().len(),
        1,
        "no invite was created: {invites}"
    );
    assert_eq!(invites[0]["status"], "active", "the invite was not revoked");
    assert_eq!(
        app.get_ok(&outsider.token, "/api/v1/classes").await,
        json!([])
    );

    let denied = app
        .audit(&format!("actor={}&outcome=denied", outsider.username))
        .await;
    for action in [
        "class.update",
        "class.member_add",
        "class.member_remove",
        "invite.create",
        "invite.revoke",
    ] {
        assert!(
            !with_action(&denied, action).is_empty(),
            "the refused {action} is audited: {denied:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_student_of_a_class_reads_it_and_sees_only_its_teachers() {
    let app = TestApp::spawn().await;
    let teacher = app.user(Role::Teacher).await;
    let student = app.user(Role::Student).await;
    let classmate = app.user(Role::Student).await;
    let class = app.create_class(&teacher.token, "Radiology").await;
    app.add_member(&teacher.token, class, &student.username, "student")
        .await;
    app.add_member(&teacher.token, class, &classmate.username, "student")
        .await;
    app.create_invite(&teacher.token, class, "student", 3).await;
    let base = format!("/api/v1/classes/{class}");

    let seen = app.get_ok(&student.token, &base).await;
    assert_eq!(seen["name"], "Radiology");
    assert_eq!(seen["my_role"], "student");
    let members = app.get_ok(&student.token, &format!("{base}/members")).await;
    assert_eq!(
        usernames(members.as_array().unwrap()),
        std::slice::from_ref(&teacher.username),
        "students see only the teachers"
    );
    assert_eq!(
        app.get_ok(&student.token, "/api/v1/classes")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_student_of_a_class_cannot_see_its_invites_or_change_anything() {
    let app = TestApp::spawn().await;
    let teacher = app.user(Role::Teacher).await;
    let student = app.user(Role::Student).await;
    let classmate = app.user(Role::Student).await;
    let class = app.create_class(&teacher.token, "Radiology").await;
    app.add_member(&teacher.token, class, &student.username, "student")
        .await;
    app.add_member(&teacher.token, class, &classmate.username, "student")
        .await;
    let invite = app.create_invite(&teacher.token, class, "student", 3).await;
    let base = format!("/api/v1/classes/{class}");

    let reply = app.get(&student.token, &format!("{base}/invites")).await;
    let message = assert_forbidden(&reply);
    assert!(message.contains("only the teachers"), "{message}");
    assert!(
        !reply
            .1
            .to_string()
            .contains(invite["code"].as_str().unwrap()),
        "the code must not leak"
    );
    let message = assert_forbidden(
        &app.patch(&student.token, &base, json!({"name": "Renamed"}))
            .await,
    );
    assert!(
        message.contains("only the teachers of this class"),
        "{message}"
    );
    assert_forbidden(
        &app.post(
            &student.token,
            &format!("{base}/members"),
            json!({"username": student.username, "role": "teacher"}),
        )
        .await,
    );
    assert_forbidden(
        &app.delete(&student.token, &format!("{base}/members/{}", classmate.id))
            .await,
    );
    assert_forbidden(
        &app.delete(&student.token, &format!("{base}/members/{}", teacher.id))
            .await,
    );
    assert_forbidden(
        &app.post(
            &student.token,
            &format!("{base}/invites"),
            json!({"role": "teacher", "max_uses": 1}),
        )
        .await,
    );
    assert_forbidden(
        &app.delete(&student.token, &format!("{base}/invites/{}", invite["id"]))
            .await,
    );

    assert_eq!(
        app.get_ok(&app.admin.token, &base).await["name"],
        "Radiology"
    );
    let members = app.members(class).await;
    assert_eq!(members.len(), 3);
    assert!(
        members
            .iter()
            .any(|m| m["username"] == student.username && m["role"] == "student")
    );
    assert_eq!(
        app.get_ok(&app.admin.token, &format!("{base}/invites"))
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        app.invite(class, invite["id"].as_i64().unwrap()).await["status"],
        "active"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_student_cannot_read_a_class_they_are_not_in() {
    let app = TestApp::spawn().await;
    let teacher = app.user(Role::Teacher).await;
    let student = app.user(Role::Student).await;
    let theirs = app.create_class(&teacher.token, "Mine").await;
    let other = app.create_class(&teacher.token, "Other").await;
    app.add_member(&teacher.token, theirs, &student.username, "student")
        .await;

    let reply = app
        .get(&student.token, &format!("/api/v1/classes/{other}"))
        .await;
    let message = assert_forbidden(&reply);
    assert!(
        message.contains("ask its teacher for an invite code"),
        "{message}"
    );
    assert!(reply.1.get("name").is_none());
    assert_forbidden(
        &app.get(&student.token, &format!("/api/v1/classes/{other}/members"))
            .await,
    );
    let listed = app.get_ok(&student.token, "/api/v1/classes").await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], theirs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teacher_cannot_make_a_platform_student_a_class_teacher() {
    let app = TestApp::spawn().await;
    let teacher = app.user(Role::Teacher).await;
    let student = app.user(Role::Student).await;
    let class = app.create_class(&teacher.token, "Guarded").await;
    let path = format!("/api/v1/classes/{class}/members");

    let message = assert_forbidden(
        &app.post(
            &teacher.token,
            &path,
            json!({"username": student.username, "role": "teacher"}),
        )
        .await,
    );
    assert!(message.contains("cannot be made a teacher"), "{message}");
    assert!(
        !usernames(&app.members(class).await).contains(&student.username),
        "not added at all"
    );

    // Nor promote one who is already a student of the class.
    app.add_member(&teacher.token, class, &student.username, "student")
        .await;
    assert_forbidden(
        &app.post(
            &teacher.token,
            &path,
            json!({"username": student.username, "role": "teacher"}),
        )
        .await,
    );
    let members = app.members(class).await;
    let member = members
        .iter()
        .find(|m| m["username"] == student.username)
        .unwrap();
    assert_eq!(member["role"], "student");

    // A platform teacher may be added as a co-teacher.
    let colleague = app.user(Role::Teacher).await;
    assert_eq!(
        app.add_member(&teacher.token, class, &colleague.username, "teacher")
            .await["role"],
        "teacher"
    );
    let denied = app.audit("action=class.member_add&outcome=denied").await;
    assert_eq!(denied.len(), 2, "{denied:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_can_do_everything_with_any_class() {
    let app = TestApp::spawn().await;
    let teacher = app.user(Role::Teacher).await;
    let student = app.user(Role::Student).await;
    let class = app.create_class(&teacher.token, "Teacher's").await;
    let base = format!("/api/v1/classes/{class}");
    let admin = &app.admin.token;

    assert_eq!(app.get_ok(admin, &base).await["my_role"], Value::Null);
    let (status, body) = app
        .patch(
            admin,
            &base,
            json!({"name": "Renamed by admin", "ends_on": "2027-02-28"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["name"], "Renamed by admin");
    assert_eq!(body["starts_on"], "2026-09-01");
    assert_eq!(body["ends_on"], "2027-02-28");
    // An admin may even make a platform student a class teacher.
    assert_eq!(
        app.add_member(admin, class, &student.username, "teacher")
            .await["role"],
        "teacher"
    );
    let invite = app.create_invite(admin, class, "teacher", 2).await;
    assert_eq!(
        app.get_ok(admin, &format!("{base}/invites"))
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let (status, revoked) = app
        .delete(admin, &format!("{base}/invites/{}", invite["id"]))
        .await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["status"], "revoked");
    let (status, body) = app
        .delete(admin, &format!("{base}/members/{}", student.id))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(
        usernames(&app.members(class).await),
        std::slice::from_ref(&teacher.username)
    );

    let entries = app.audit("actor=admin&action=class.").await;
    assert!(
        entries.iter().all(|e| e["admin_power"] == true),
        "admin acting on others' classes is marked: {entries:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_class_teacher_changes_the_class_and_its_members() {
    let app = TestApp::spawn().await;
    let teacher = app.user(Role::Teacher).await;
    let student = app.user(Role::Student).await;
    let class = app.create_class(&teacher.token, "Before").await;
    let base = format!("/api/v1/classes/{class}");
    let (status, body) = app
        .patch(
            &teacher.token,
            &base,
            json!({"name": "After", "description": "Line one\nLine two"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["name"], "After");
    assert_eq!(body["my_role"], "teacher");
    app.add_member(&teacher.token, class, &student.username, "student")
        .await;
    let (status, _) = app
        .delete(&teacher.token, &format!("{base}/members/{}", student.id))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_forbidden(&app.get(&student.token, &base).await);
    // Removing someone who is not a member is a 404 that says so.
    let message = assert_error(
        &app.delete(&teacher.token, &format!("{base}/members/{}", student.id))
            .await,
        404,
        "not_found",
    );
    assert!(message.contains("not a member"), "{message}");
    assert_eq!(app.audit("action=class.update").await.len(), 1);
    assert_eq!(
        app.audit("action=class.member_remove&outcome=success")
            .await
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_members_show_who_added_them_and_registered_members_show_their_invite_code() {
    let app = TestApp::spawn().await;
    let teacher = app.user(Role::Teacher).await;
    let added = app.user(Role::Student).await;
    let class = app.create_class(&teacher.token, "Joined two ways").await;
    app.add_member(&teacher.token, class, &added.username, "student")
        .await;
    let invite = app
        .create_invite(&teacher.token, class, "student", 10)
        .await;
    let code = invite["code"].as_str().unwrap();
    let (status, body) = app.register(code, "registered").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let members = app
        .get_ok(&teacher.token, &format!("/api/v1/classes/{class}/members"))
        .await;
    let find = |name: &str| {
        members
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["username"] == name)
            .cloned()
            .unwrap()
    };
    let by_hand = find(&added.username);
    assert_eq!(by_hand["added_by"], teacher.username);
    assert_eq!(by_hand["invite_code"], Value::Null);
    let by_code = find("registered");
    assert_eq!(by_code["invite_code"], code);
    assert_eq!(by_code["added_by"], Value::Null);
    assert_eq!(by_code["role"], "student");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teachers_list_only_their_classes_and_admins_list_all() {
    let app = TestApp::spawn().await;
    let first = app.user(Role::Teacher).await;
    let second = app.user(Role::Teacher).await;
    app.create_class(&first.token, "First's").await;
    app.create_class(&second.token, "Second's A").await;
    app.create_class(&second.token, "Second's B").await;
    let listed = |v: Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        listed(app.get_ok(&first.token, "/api/v1/classes").await),
        ["First's"]
    );
    assert_eq!(
        listed(app.get_ok(&second.token, "/api/v1/classes").await).len(),
        2
    );
    assert_eq!(
        listed(app.get_ok(&app.admin.token, "/api/v1/classes").await).len(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_an_unknown_user_is_a_404_that_names_them() {
    let app = TestApp::spawn().await;
    let teacher = app.user(Role::Teacher).await;
    let class = app.create_class(&teacher.token, "C").await;
    let reply = app
        .post(
            &teacher.token,
            &format!("/api/v1/classes/{class}/members"),
            json!({"username": "ghost", "role": "student"}),
        )
        .await;
    let message = assert_error(&reply, 404, "not_found");
    assert!(message.contains("'ghost'"), "{message}");
    assert_eq!(app.members(class).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_class_ids_are_404_with_a_message() {
    let app = TestApp::spawn().await;
    let admin = &app.admin.token;
    let message = assert_error(
        &app.get(admin, "/api/v1/classes/4242").await,
        404,
        "not_found",
    );
    assert!(message.contains("4242"), "{message}");
    assert_error(
        &app.get(admin, "/api/v1/classes/4242/members").await,
        404,
        "not_found",
    );
    assert_error(
        &app.get(admin, "/api/v1/classes/4242/invites").await,
        404,
        "not_found",
    );
    assert_error(
        &app.patch(admin, "/api/v1/classes/4242", json!({"name": "x"}))
            .await,
        404,
        "not_found",
    );
    assert_error(
        &app.post(
            admin,
            "/api/v1/classes/4242/invites",
            json!({"role": "student", "max_uses": 1}),
        )
        .await,
        404,
        "not_found",
    );
    assert_error(
        &app.post(
            admin,
            "/api/v1/classes/4242/members",
            json!({"username": "admin", "role": "student"}),
        )
        .await,
        404,
        "not_found",
    );
    assert_error(
        &app.delete(admin, "/api/v1/classes/4242/members/1").await,
        404,
        "not_found",
    );
    assert_error(
        &app.delete(admin, "/api/v1/classes/4242/invites/1").await,
        404,
        "not_found",
    );
}
