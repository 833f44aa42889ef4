//! Pages for users (admins), classes with members and invite codes, API tokens and the
//! audit log (admins).

use super::{
    Notice, PageCaller, PageError, PageForm, PagePath, PageQuery, csrf_field, done_notice, page,
    url_escape,
};
use crate::AppState;
use crate::api::audit::AuditQuery;
use crate::auth::ClientAddr;
use crate::error::ApiError;
use crate::service::{
    self, AddMemberRequest, ClassRequest, CreateInviteRequest, CreateTokenRequest,
    CreateUserRequest, ResetPasswordRequest, UpdateClassRequest, UpdateUserRequest,
};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use voxhub_core::permissions::ClassView;
use voxhub_core::role::{ClassRole, Role};
use voxhub_core::timefmt::human;

#[derive(Deserialize, Default)]
pub struct ListQuery {
    done: Option<String>,
    q: Option<String>,
}

/// Renders a page again with an error for a refused form (keeping what was typed), or
/// turns a server failure into an error page.
fn form_failed(
    error: ApiError,
    render: impl FnOnce(Notice) -> Markup,
) -> Result<Response, PageError> {
    if error.status.is_client_error()
        && error.status != StatusCode::FORBIDDEN
        && error.status != StatusCode::NOT_FOUND
    {
        let status = error.status;
        Ok((status, render(Notice::Error(error.message))).into_response())
    } else {
        Err(error.into())
    }
}

fn plural(count: i64, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

fn role_badge(text: &str) -> Markup {
    html! { span class={"badge " (text)} { (text) } }
}

// ------------------------------------------------------------------------------------------
// Users
// ------------------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
pub struct NewUserForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    password: String,
}

async fn users_view(
    state: &AppState,
    caller: &PageCaller,
    source: &str,
    search: Option<&str>,
    form: &NewUserForm,
) -> Result<Markup, ApiError> {
    let users = service::list_users(state, &caller.0.context(source), search).await?;
    Ok(html! {
        h1 { "Users" }
        div.card {
            h2 { "Create an account" }
            p.muted { "Students usually register themselves with an invite code from their class page. Create accounts here for teachers and admins, or for people without a code." }
            form method="post" action="/users" {
                (csrf_field(caller))
                div.row {
                    div { label for="username" { "Username" } input #username type="text" name="username" value=(form.username) required maxlength="32"; }
                    div { label for="display_name" { "Display name" } input #display_name type="text" name="display_name" value=(form.display_name) required maxlength="100"; }
                    div { label for="role" { "Role" }
                        select #role name="role" {
                            @for role in ["student", "teacher", "admin"] {
                                option value=(role) selected[form.role == role] { (role) }
                            }
                        }
                    }
                    div { label for="password" { "Initial password" } input #password type="password" name="password" required minlength="10" autocomplete="new-password"; }
                    div.shrink { button type="submit" { "Create" } }
                }
            }
        }
        form.row method="get" action="/users" {
            div { label for="q" { "Search" } input #q type="search" name="q" value=(search.unwrap_or("")) placeholder="username or name"; }
            div.shrink { button.secondary type="submit" { "Search" } }
        }
        table #users {
            thead { tr { th { "Username" } th { "Name" } th { "Role" } th { "State" } th { "Created" } } }
            tbody {
                @for user in &users {
                    tr {
                        td { a href={"/users/" (user.id)} { (user.username) } }
                        td { (user.display_name) }
                        td { (user.role) }
                        td { @if user.disabled { (role_badge("disabled")) } @else { (role_badge("active")) } }
                        td { (human(user.created_at)) }
                    }
                }
            }
        }
    })
}

pub async fn users_page(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PageQuery(query): PageQuery<ListQuery>,
) -> Result<Markup, PageError> {
    let content = users_view(
        &state,
        &caller,
        &source,
        query.q.as_deref(),
        &NewUserForm::default(),
    )
    .await?;
    Ok(page(
        &caller,
        "/users",
        "Users",
        done_notice(query.done.as_deref()),
        content,
    ))
}

pub async fn user_create(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PageForm(form): PageForm<NewUserForm>,
) -> Result<Response, PageError> {
    caller.check_csrf(&form.csrf)?;
    let Some(role) = Role::parse(&form.role) else {
        return Err(ApiError::bad_request(
            "invalid_input",
            "choose a role: student, teacher or admin",
        )
        .into());
    };
    let request = CreateUserRequest {
        username: form.username.clone(),
        display_name: form.display_name.clone(),
        role,
        password: form.password.clone(),
    };
    match service::create_user(&state, &caller.0.context(&source), request).await {
        Ok(user) => {
            Ok(Redirect::to(&format!("/users/{}?done=user_created", user.id)).into_response())
        }
        Err(error) => {
            let content = users_view(&state, &caller, &source, None, &form).await?;
            form_failed(error, |notice| {
                page(&caller, "/users", "Users", Some(notice), content)
            })
        }
    }
}

async fn user_view(
    state: &AppState,
    caller: &PageCaller,
    source: &str,
    user_id: i64,
) -> Result<Markup, ApiError> {
    let ctx = caller.0.context(source);
    voxhub_core::permissions::require_admin(&caller.0.actor(), "manage other accounts")?;
    let user = service::get_user(state, &ctx, user_id).await?;
    let classes = state.store.memberships_of(user_id).await?;
    Ok(html! {
        p { a href="/users" { "← All users" } }
        h1 { (user.display_name) " " span.muted { "(" (user.username) ")" } }
        div.card {
            p { "Role: " strong { (user.role) } " · State: " @if user.disabled { (role_badge("disabled")) } @else { (role_badge("active")) } " · Created " (human(user.created_at)) }
            @if !classes.is_empty() {
                p { "Classes: "
                    @for (i, class) in classes.iter().enumerate() {
                        @if i > 0 { ", " }
                        a href={"/classes/" (class.id)} { (class.name) } " (" (class.role) ")"
                    }
                }
            }
        }
        div.card {
            h2 { "Change details" }
            form method="post" action={"/users/" (user.id)} {
                (csrf_field(caller))
                div.row {
                    div { label for="display_name" { "Display name" } input #display_name type="text" name="display_name" value=(user.display_name) required maxlength="100"; }
                    div { label for="role" { "Role" }
                        select #role name="role" {
                            @for role in ["student", "teacher", "admin"] {
                                option value=(role) selected[user.role.as_str() == role] { (role) }
                            }
                        }
                    }
                    div.shrink { button type="submit" { "Save" } }
                }
            }
        }
        div.card {
            h2 { "Set a new password" }
            p.muted { "Use this when someone forgot their password. Their sessions end and their API tokens are revoked; tell them the new password in person." }
            form method="post" action={"/users/" (user.id) "/password"} {
                (csrf_field(caller))
                div.row {
                    div { label for="password" { "New password" } input #password type="password" name="password" required minlength="10" autocomplete="new-password"; }
                    div.shrink { button type="submit" { "Set password" } }
                }
            }
        }
        div.card {
            h2 { @if user.disabled { "Enable the account" } @else { "Disable the account" } }
            p.muted { "A disabled account cannot log in and its API tokens stop working. Nothing is deleted; enabling it again restores access." }
            form method="post" action={"/users/" (user.id) "/state"} {
                (csrf_field(caller))
                @if user.disabled {
                    input type="hidden" name="disabled" value="false";
                    button type="submit" { "Enable " (user.username) }
                } @else {
                    input type="hidden" name="disabled" value="true";
                    button.danger type="submit" { "Disable " (user.username) }
                }
            }
        }
    })
}

pub async fn user_page(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PagePath(id): PagePath<i64>,
    PageQuery(query): PageQuery<ListQuery>,
) -> Result<Markup, PageError> {
    let content = user_view(&state, &caller, &source, id).await?;
    Ok(page(
        &caller,
        "/users",
        "User",
        done_notice(query.done.as_deref()),
        content,
    ))
}

#[derive(Deserialize)]
pub struct UserEditForm {
    csrf: String,
    display_name: String,
    role: String,
}

async fn user_form_result(
    state: &AppState,
    caller: &PageCaller,
    source: &str,
    id: i64,
    result: Result<(), ApiError>,
    done: &str,
) -> Result<Response, PageError> {
    match result {
        Ok(()) => Ok(Redirect::to(&format!("/users/{id}?done={done}")).into_response()),
        Err(error) => {
            let content = user_view(state, caller, source, id).await?;
            form_failed(error, |notice| {
                page(caller, "/users", "User", Some(notice), content)
            })
        }
    }
}

pub async fn user_update(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PagePath(id): PagePath<i64>,
    PageForm(form): PageForm<UserEditForm>,
) -> Result<Response, PageError> {
    caller.check_csrf(&form.csrf)?;
    let role = Role::parse(&form.role).ok_or_else(|| {
        ApiError::bad_request("invalid_input", "choose a role: student, teacher or admin")
    })?;
    let current = state.store.user(id).await.map_err(ApiError::from)?;
    let request = UpdateUserRequest {
        display_name: Some(form.display_name),
        role: (role != current.role).then_some(role),
        disabled: None,
    };
    let result = service::update_user(&state, &caller.0.context(&source), id, request)
        .await
        .map(|_| ());
    user_form_result(&state, &caller, &source, id, result, "user_changed").await
}

#[derive(Deserialize)]
pub struct PasswordResetForm {
    csrf: String,
    password: String,
}

pub async fn user_password(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PagePath(id): PagePath<i64>,
    PageForm(form): PageForm<PasswordResetForm>,
) -> Result<Response, PageError> {
    caller.check_csrf(&form.csrf)?;
    let request = ResetPasswordRequest {
        password: form.password,
    };
    let result = service::reset_password(&state, &caller.0.context(&source), id, request)
        .await
        .map(|_| ());
    user_form_result(&state, &caller, &source, id, result, "password_reset").await
}

#[derive(Deserialize)]
pub struct UserStateForm {
    csrf: String,
    disabled: bool,
}

pub async fn user_state(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PagePath(id): PagePath<i64>,
    PageForm(form): PageForm<UserStateForm>,
) -> Result<Response, PageError> {
    caller.check_csrf(&form.csrf)?;
    let request = UpdateUserRequest {
        disabled: Some(form.disabled),
        ..Default::default()
    };
    let result = service::update_user(&state, &caller.0.context(&source), id, request)
        .await
        .map(|_| ());
    let done = if form.disabled {
        "user_disabled"
    } else {
        "user_enabled"
    };
    user_form_result(&state, &caller, &source, id, result, done).await
}

// ------------------------------------------------------------------------------------------
// Classes
// ------------------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
pub struct ClassForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    starts_on: String,
    #[serde(default)]
    ends_on: String,
}

fn class_fields(form: &ClassForm) -> Markup {
    html! {
        div.row {
            div { label for="class_name" { "Name" } input #class_name type="text" name="name" value=(form.name) required maxlength="100" placeholder="Deep Learning for Medical Imaging"; }
            div { label for="starts_on" { "First day" } input #starts_on type="date" name="starts_on" value=(form.starts_on) required; }
            div { label for="ends_on" { "Last day" } input #ends_on type="date" name="ends_on" value=(form.ends_on) required; }
        }
        label for="description" { "Description " span.hint { "(optional)" } }
        textarea #description name="description" maxlength="4000" { (form.description) }
    }
}

async fn classes_view(
    state: &AppState,
    caller: &PageCaller,
    form: &ClassForm,
) -> Result<Markup, ApiError> {
    let classes = service::list_classes(state, &caller.0).await?;
    let can_create = caller.0.user.role != Role::Student;
    Ok(html! {
        h1 { "Classes" }
        @if classes.is_empty() {
            div.card { p { @if can_create { "There are no classes yet. Create the first one below." } @else { "You are not in any class yet. Ask your teacher for an invite code." } } }
        } @else {
            table #classes {
                thead { tr { th { "Name" } th { "Dates" } th { "Teachers" } th { "Students" } } }
                tbody {
                    @for class in &classes {
                        tr {
                            td { a href={"/classes/" (class.id)} { (class.name) } }
                            td { (class.starts_on) " to " (class.ends_on) }
                            td { (class.teacher_count) }
                            td { (class.student_count) }
                        }
                    }
                }
            }
        }
        @if can_create {
            div.card {
                h2 { "Create a class" }
                form #create-class method="post" action="/classes" {
                    (csrf_field(caller))
                    (class_fields(form))
                    p { button type="submit" { "Create class" } }
                }
            }
        }
    })
}

pub async fn classes_page(
    State(state): State<AppState>,
    caller: PageCaller,
    PageQuery(query): PageQuery<ListQuery>,
) -> Result<Markup, PageError> {
    let content = classes_view(&state, &caller, &ClassForm::default()).await?;
    Ok(page(
        &caller,
        "/classes",
        "Classes",
        done_notice(query.done.as_deref()),
        content,
    ))
}

pub async fn class_create(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PageForm(form): PageForm<ClassForm>,
) -> Result<Response, PageError> {
    caller.check_csrf(&form.csrf)?;
    let request = ClassRequest {
        name: form.name.clone(),
        description: form.description.clone(),
        starts_on: form.starts_on.clone(),
        ends_on: form.ends_on.clone(),
    };
    match service::create_class(&state, &caller.0.context(&source), request).await {
        Ok(class) => Ok(
            Redirect::to(&format!("/classes/{}?done=class_created", class.class.id))
                .into_response(),
        ),
        Err(error) => {
            let content = classes_view(&state, &caller, &form).await?;
            form_failed(error, |notice| {
                page(&caller, "/classes", "Classes", Some(notice), content)
            })
        }
    }
}

async fn class_view(
    state: &AppState,
    caller: &PageCaller,
    source: &str,
    class_id: i64,
) -> Result<(String, Markup), ApiError> {
    let ctx = caller.0.context(source);
    let (class, view) = service::get_class(state, &ctx, class_id).await?;
    let members = service::members_in_view(state, class_id, view).await?;
    let full = view == ClassView::Full;
    let invites = if full {
        // Full view means they may manage the class; the read was checked and audited above.
        state.store.invites(class_id).await?
    } else {
        Vec::new()
    };
    let c = &class.class;
    let edit = ClassForm {
        name: c.name.clone(),
        description: c.description.clone(),
        starts_on: c.starts_on.clone(),
        ends_on: c.ends_on.clone(),
        ..Default::default()
    };
    let markup = html! {
        p { a href="/classes" { "← All classes" } }
        h1 #class-name { (c.name) }
        div.card {
            p.muted { (c.starts_on) " to " (c.ends_on) " · " (plural(c.teacher_count, "teacher")) " · " (plural(c.student_count, "student"))
                @if let Some(role) = class.my_role { " · you are a " (role) " here" } }
            @if !c.description.is_empty() { p style="white-space: pre-wrap" { (c.description) } }
        }
        @if full {
            h2 { "Invite codes" }
            div.card {
                p.muted { "Give a code to the people who should join. They open " strong { "/register" } " on this site, type the code and choose a username and password." }
                form #create-invite method="post" action={"/classes/" (c.id) "/invites"} {
                    (csrf_field(caller))
                    div.row {
                        div { label for="invite_role" { "They join as" }
                            select #invite_role name="role" { option value="student" selected { "student" } option value="teacher" { "teacher" } } }
                        div { label for="max_uses" { "How many people" } input #max_uses type="number" name="max_uses" value="60" min="1" max="10000" required; }
                        div { label for="expires_in" { "Works for" }
                            select #expires_in name="expires_in" {
                                option value="1d" { "1 day" } option value="7d" { "1 week" }
                                option value="14d" selected { "2 weeks" } option value="30d" { "30 days" } option value="90d" { "90 days" }
                            } }
                        div.shrink { button type="submit" { "Create invite code" } }
                    }
                }
            }
            @if !invites.is_empty() {
                table #invites {
                    thead { tr { th { "Code" } th { "Joins as" } th { "Used" } th { "Expires" } th { "Created by" } th { "State" } th {} } }
                    tbody {
                        @for invite in &invites {
                            tr {
                                td { span.invite-code { (invite.code) } }
                                td { (invite.role) }
                                td { (invite.uses) " of " (invite.max_uses) }
                                td { (human(invite.expires_at)) }
                                td { (invite.created_by) }
                                td { (role_badge(&invite.status)) }
                                td { @if invite.status == "active" {
                                    form.inline method="post" action={"/classes/" (c.id) "/invites/" (invite.id) "/revoke"} {
                                        (csrf_field(caller)) button.small.danger type="submit" { "Revoke" }
                                    }
                                } }
                            }
                        }
                    }
                }
            }
            h2 { "Members" }
        } @else {
            h2 { "Teachers" }
        }
        @if members.is_empty() {
            p.muted #members { @if full { "Nobody has joined yet. Create an invite code above, or add someone below." } @else { "No teacher has been added to this class yet." } }
        } @else {
        table #members {
            thead { tr { th { "Name" } th { "Username" } th { "Role" } @if full { th { "Joined" } th { "Joined with" } th {} } } }
            tbody {
                @for member in &members {
                    tr {
                        td { (member.display_name) @if member.disabled { " " (role_badge("disabled")) } }
                        td.member-username { (member.username) }
                        td { (member.role) }
                        @if full {
                            td { (human(member.joined_at)) }
                            td { @if let Some(code) = &member.invite_code { "invite code " span.invite-code { (code) } }
                                 @else if let Some(by) = &member.added_by { "added by " (by) } @else { "-" } }
                            td { form.inline method="post" action={"/classes/" (c.id) "/members/" (member.user_id) "/remove"} {
                                (csrf_field(caller)) button.small.secondary type="submit" { "Remove" }
                            } }
                        }
                    }
                }
            }
        }
        }
        @if full {
            div.card {
                h2 { "Add someone who already has an account" }
                form method="post" action={"/classes/" (c.id) "/members"} {
                    (csrf_field(caller))
                    div.row {
                        div { label for="member_username" { "Username" } input #member_username type="text" name="username" required maxlength="32"; }
                        div { label for="member_role" { "Role in this class" }
                            select #member_role name="role" { option value="student" { "student" } option value="teacher" { "teacher" } } }
                        div.shrink { button type="submit" { "Add" } }
                    }
                }
            }
            details.card {
                summary { "Edit the class" }
                form method="post" action={"/classes/" (c.id)} {
                    (csrf_field(caller))
                    (class_fields(&edit))
                    p { button type="submit" { "Save changes" } }
                }
            }
        }
    };
    Ok((c.name.clone(), markup))
}

pub async fn class_page(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PagePath(id): PagePath<i64>,
    PageQuery(query): PageQuery<ListQuery>,
) -> Result<Markup, PageError> {
    let (title, content) = class_view(&state, &caller, &source, id).await?;
    Ok(page(
        &caller,
        "/classes",
        &title,
        done_notice(query.done.as_deref()),
        content,
    ))
}

async fn class_form_result(
    state: &AppState,
    caller: &PageCaller,
    source: &str,
    id: i64,
    result: Result<(), ApiError>,
    done: &str,
) -> Result<Response, PageError> {
    match result {
        Ok(()) => Ok(Redirect::to(&format!("/classes/{id}?done={done}")).into_response()),
        Err(error) => {
            let (title, content) = class_view(state, caller, source, id).await?;
            form_failed(error, |notice| {
                page(caller, "/classes", &title, Some(notice), content)
            })
        }
    }
}

pub async fn class_update(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PagePath(id): PagePath<i64>,
    PageForm(form): PageForm<ClassForm>,
) -> Result<Response, PageError> {
    caller.check_csrf(&form.csrf)?;
    let request = UpdateClassRequest {
        name: Some(form.name),
        description: Some(form.description),
        starts_on: Some(form.starts_on),
        ends_on: Some(form.ends_on),
    };
    let result = service::update_class(&state, &caller.0.context(&source), id, request)
        .await
        .map(|_| ());
    class_form_result(&state, &caller, &source, id, result, "class_changed").await
}

#[derive(Deserialize)]
pub struct MemberForm {
    csrf: String,
    username: String,
    role: String,
}

pub async fn member_add(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PagePath(id): PagePath<i64>,
    PageForm(form): PageForm<MemberForm>,
) -> Result<Response, PageError> {
    caller.check_csrf(&form.csrf)?;
    let role = ClassRole::parse(&form.role).ok_or_else(|| {
        ApiError::bad_request("invalid_input", "choose a role: student or teacher")
    })?;
    let request = AddMemberRequest {
        username: form.username,
        role,
    };
    let result = service::add_member(&state, &caller.0.context(&source), id, request)
        .await
        .map(|_| ());
    class_form_result(&state, &caller, &source, id, result, "member_added").await
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

pub async fn member_remove(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PagePath((id, user_id)): PagePath<(i64, i64)>,
    PageForm(form): PageForm<CsrfForm>,
) -> Result<Response, PageError> {
    caller.check_csrf(&form.csrf)?;
    let result = service::remove_member(&state, &caller.0.context(&source), id, user_id).await;
    class_form_result(&state, &caller, &source, id, result, "member_removed").await
}

#[derive(Deserialize)]
pub struct InviteForm {
    csrf: String,
    role: String,
    max_uses: String,
    expires_in: String,
}

pub async fn invite_create(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PagePath(id): PagePath<i64>,
    PageForm(form): PageForm<InviteForm>,
) -> Result<Response, PageError> {
    caller.check_csrf(&form.csrf)?;
    let role = ClassRole::parse(&form.role).ok_or_else(|| {
        ApiError::bad_request("invalid_input", "choose who joins: student or teacher")
    })?;
    let result = match form.max_uses.trim().parse::<i64>() {
        Ok(max_uses) => {
            let request = CreateInviteRequest {
                role,
                max_uses,
                expires_in: form.expires_in,
            };
            service::create_invite(&state, &caller.0.context(&source), id, request)
                .await
                .map(|_| ())
        }
        Err(_) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            "the number of people must be a whole number such as 60",
        )),
    };
    class_form_result(&state, &caller, &source, id, result, "invite_created").await
}

pub async fn invite_revoke(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PagePath((id, invite_id)): PagePath<(i64, i64)>,
    PageForm(form): PageForm<CsrfForm>,
) -> Result<Response, PageError> {
    caller.check_csrf(&form.csrf)?;
    let result = service::revoke_invite(&state, &caller.0.context(&source), id, invite_id)
        .await
        .map(|_| ());
    class_form_result(&state, &caller, &source, id, result, "invite_revoked").await
}

// ------------------------------------------------------------------------------------------
// API tokens
// ------------------------------------------------------------------------------------------

async fn tokens_view(
    state: &AppState,
    caller: &PageCaller,
    source: &str,
    new_secret: Option<&str>,
) -> Result<Markup, ApiError> {
    let tokens = service::list_tokens(state, &caller.0.context(source), None).await?;
    let now = voxhub_store::now_s();
    Ok(html! {
        h1 { "API tokens" }
        p.muted { "A token lets the voxhub command line or your own scripts act as you. Keep tokens secret; revoke one as soon as you no longer need it." }
        @if let Some(secret) = new_secret {
            div.card {
                h2 { "Your new token" }
                p { strong { "Copy it now: it is shown only this once." } }
                p.secret-box #new-token { (secret) }
                p.muted { "Use it as " code { "Authorization: Bearer <token>" } ", or set " code { "VOXHUB_TOKEN" } " for the command line." }
            }
        }
        div.card {
            h2 { "Create a token" }
            form method="post" action="/tokens" {
                (csrf_field(caller))
                div.row {
                    div { label for="token_name" { "What it is for" } input #token_name type="text" name="name" required maxlength="100" placeholder="laptop"; }
                    div { label for="token_expires" { "Works for" }
                        select #token_expires name="expires_in" {
                            option value="7d" { "1 week" } option value="30d" { "30 days" } option value="90d" selected { "90 days" } option value="365d" { "1 year" }
                        } }
                    div.shrink { button type="submit" { "Create token" } }
                }
            }
        }
        table #tokens {
            thead { tr { th { "Name" } th { "Starts with" } th { "Created" } th { "Expires" } th { "Last used" } th { "State" } th {} } }
            tbody {
                @for token in &tokens {
                    @let state_text = if token.revoked_at.is_some() { "revoked" } else if token.expires_at <= now { "expired" } else { "active" };
                    tr {
                        td { (token.name) }
                        td { code { (token.hint) "…" } }
                        td { (human(token.created_at)) }
                        td { (human(token.expires_at)) }
                        td { @if let Some(t) = token.last_used_at { (human(t)) } @else { "never" } }
                        td { (role_badge(state_text)) }
                        td { @if state_text == "active" {
                            form.inline method="post" action={"/tokens/" (token.id) "/revoke"} {
                                (csrf_field(caller)) button.small.danger type="submit" { "Revoke" }
                            }
                        } }
                    }
                }
            }
        }
    })
}

pub async fn tokens_page(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PageQuery(query): PageQuery<ListQuery>,
) -> Result<Markup, PageError> {
    let content = tokens_view(&state, &caller, &source, None).await?;
    Ok(page(
        &caller,
        "/tokens",
        "API tokens",
        done_notice(query.done.as_deref()),
        content,
    ))
}

#[derive(Deserialize)]
pub struct TokenForm {
    csrf: String,
    name: String,
    expires_in: String,
}

pub async fn token_create(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PageForm(form): PageForm<TokenForm>,
) -> Result<Response, PageError> {
    caller.check_csrf(&form.csrf)?;
    let request = CreateTokenRequest {
        name: form.name,
        expires_in: form.expires_in,
    };
    match service::create_token(&state, &caller.0.context(&source), request).await {
        // Shown directly, never through a redirect, so the secret is in no URL or history.
        Ok(created) => {
            let content = tokens_view(&state, &caller, &source, Some(&created.secret)).await?;
            let mut response =
                page(&caller, "/tokens", "API tokens", None, content).into_response();
            response.headers_mut().insert(
                axum::http::header::CACHE_CONTROL,
                axum::http::HeaderValue::from_static("no-store"),
            );
            Ok(response)
        }
        Err(error) => {
            let content = tokens_view(&state, &caller, &source, None).await?;
            form_failed(error, |notice| {
                page(&caller, "/tokens", "API tokens", Some(notice), content)
            })
        }
    }
}

pub async fn token_revoke(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PagePath(id): PagePath<i64>,
    PageForm(form): PageForm<CsrfForm>,
) -> Result<Response, PageError> {
    caller.check_csrf(&form.csrf)?;
    service::revoke_token(&state, &caller.0.context(&source), id).await?;
    Ok(Redirect::to("/tokens?done=token_revoked").into_response())
}

// ------------------------------------------------------------------------------------------
// Audit log
// ------------------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
pub struct AuditPageQuery {
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    outcome: Option<String>,
    before: Option<i64>,
    verify: Option<String>,
}

pub async fn audit_page(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PageQuery(query): PageQuery<AuditPageQuery>,
) -> Result<Markup, PageError> {
    let ctx = caller.0.context(&source);
    let page_size = 100;
    let filter = AuditQuery {
        actor: query.actor.clone(),
        action: query.action.clone(),
        target: query.target.clone(),
        outcome: query.outcome.clone(),
        before: query.before,
        limit: Some(page_size),
    }
    .into_filter()?;
    let entries = service::list_audit(&state, &ctx, filter).await?;
    let verification = if query.verify.is_some() {
        Some(service::verify_audit(&state, &ctx).await?)
    } else {
        None
    };
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    let next_page = entries
        .last()
        .filter(|_| entries.len() as i64 == page_size)
        .map(|last| {
            let mut link = format!("/audit?before={}", last.seq);
            for (key, v) in [
                ("actor", &query.actor),
                ("action", &query.action),
                ("target", &query.target),
                ("outcome", &query.outcome),
            ] {
                if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                    link.push_str(&format!("&{key}={}", url_escape(v)));
                }
            }
            link
        });
    let content = html! {
        h1 { "Audit log" }
        p.muted { "Every login, every change to accounts, classes, invite codes and tokens, and every use of admin power. Entries are chained by hashes, so an altered or removed entry is found by a check." }
        @if let Some(result) = &verification {
            @if result.intact {
                p.notice.ok role="status" #verify-result { "The log is intact: " (result.entries_checked) " entries checked. Last hash: " code { (result.head_hash.clone().unwrap_or_default()) } }
            } @else {
                p.notice.error role="alert" #verify-result { "The log was tampered with: " (result.problem.clone().unwrap_or_default()) }
            }
        }
        form.card method="get" action="/audit" {
            div.row {
                div { label for="actor" { "Who" } input #actor type="text" name="actor" value=(value(&query.actor)) placeholder="username"; }
                div { label for="action" { "Action" } input #action type="text" name="action" value=(value(&query.action)) placeholder="auth.login or user."; }
                div { label for="target" { "Target contains" } input #target type="text" name="target" value=(value(&query.target)) placeholder="class:3"; }
                div { label for="outcome" { "Outcome" }
                    select #outcome name="outcome" {
                        option value="" { "any" }
                        @for o in ["success", "failure", "denied"] { option value=(o) selected[query.outcome.as_deref() == Some(o)] { (o) } }
                    } }
                div.shrink { button type="submit" { "Filter" } }
                div.shrink { button.secondary type="submit" name="verify" value="1" { "Verify the chain" } }
            }
        }
        table #audit {
            thead { tr { th { "#" } th { "When" } th { "Who" } th { "Action" } th { "Target" } th { "Outcome" } th { "From" } th { "Details" } } }
            tbody {
                @for entry in &entries {
                    tr {
                        td { (entry.seq) }
                        td { (human(entry.at_ms / 1000)) }
                        td { (entry.actor_name) @if entry.admin_power { " " span.badge title="used admin power" { "admin" } } }
                        td { (entry.action) }
                        td { (entry.target) }
                        td { (role_badge(&entry.outcome)) }
                        td { (entry.source) }
                        td { (entry.detail) }
                    }
                }
            }
        }
        @if entries.is_empty() { p.muted { "No entries match." } }
        @if let Some(link) = next_page { p { a href=(link) { "Older entries →" } } }
    };
    Ok(page(&caller, "/audit", "Audit log", None, content))
}
