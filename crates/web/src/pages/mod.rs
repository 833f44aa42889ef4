//! The web UI: server-rendered HTML pages (maud), one stylesheet, no scripts and nothing
//! fetched from anywhere but voxhub itself. Every form that changes something carries a
//! CSRF value derived from the session secret (or, before login, a double-submitted
//! cookie), and every page calls the same [`crate::service`] operations as the API.

mod account;
mod datasets;
mod manage;
mod viewer;
mod workloads;

use crate::AppState;
use crate::auth::{Caller, PRELOGIN_CSRF_COOKIE, SESSION_COOKIE, authenticate_secret, cookie};
use crate::error::ApiError;
use axum::Router;
use axum::extract::{FromRequestParts, OriginalUri, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, html};
use voxhub_core::role::Role;

const STYLESHEET: &str = include_str!("../../static/voxhub.css");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard))
        .route("/static/voxhub.css", get(stylesheet))
        .route(
            "/login",
            get(account::login_page).post(account::login_submit),
        )
        .route("/logout", post(account::logout_submit))
        .route(
            "/register",
            get(account::register_page).post(account::register_submit),
        )
        .route("/account", get(account::account_page))
        .route("/account/password", post(account::password_submit))
        .route("/account/profile", post(account::profile_submit))
        .route("/users", get(manage::users_page).post(manage::user_create))
        .route(
            "/users/{id}",
            get(manage::user_page).post(manage::user_update),
        )
        .route("/users/{id}/password", post(manage::user_password))
        .route("/users/{id}/state", post(manage::user_state))
        .route(
            "/classes",
            get(manage::classes_page).post(manage::class_create),
        )
        .route(
            "/classes/{id}",
            get(manage::class_page).post(manage::class_update),
        )
        .route("/classes/{id}/members", post(manage::member_add))
        .route(
            "/classes/{id}/members/{user_id}/remove",
            post(manage::member_remove),
        )
        .route("/classes/{id}/invites", post(manage::invite_create))
        .route(
            "/classes/{id}/invites/{invite_id}/revoke",
            post(manage::invite_revoke),
        )
        .route(
            "/tokens",
            get(manage::tokens_page).post(manage::token_create),
        )
        .route("/tokens/{id}/revoke", post(manage::token_revoke))
        .route("/audit", get(manage::audit_page))
        .route("/queue", get(workloads::queue_page))
        .route("/jobs/new", get(workloads::job_page))
        .route("/jobs", post(workloads::job_submit))
        .route("/environments/new", get(workloads::environment_page))
        .route("/environments", post(workloads::environment_launch))
        .route("/workloads/{id}", get(workloads::workload_page))
        .route("/workloads/{id}/log", get(workloads::workload_log))
        .route("/workloads/{id}/stop", post(workloads::workload_stop))
        .route("/workloads/{id}/queue", post(workloads::workload_queue))
        .route("/workspace", get(workloads::workspace_page))
        .route("/workspace/file", get(workloads::workspace_download))
        .route(
            "/workspace/upload",
            post(workloads::workspace_upload).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route(
            "/datasets",
            get(datasets::datasets_page).post(datasets::dataset_create),
        )
        .route(
            "/datasets/{id}",
            get(datasets::dataset_page).post(datasets::dataset_update),
        )
        .route(
            "/datasets/{id}/delete",
            get(datasets::dataset_delete_page).post(datasets::dataset_delete),
        )
        .route(
            "/datasets/{id}/upload",
            post(datasets::dataset_upload).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route(
            "/datasets/{id}/uploads/{upload_id}",
            get(datasets::upload_report_page),
        )
        .route(
            "/datasets/{id}/series/{series_id}/thumbnail",
            get(datasets::series_thumbnail),
        )
        .route("/series/{id}", get(viewer::viewer_page))
        .route("/static/viewer/{version}/{file}", get(viewer::asset))
        .fallback(not_found)
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
}

async fn not_found(OriginalUri(uri): OriginalUri) -> Response {
    if uri.path().starts_with("/api/") {
        return ApiError::not_found(format!(
            "there is no API endpoint at {}; the list of endpoints is at /api/docs",
            uri.path()
        ))
        .into_response();
    }
    PageError(ApiError::not_found(
        "this page does not exist; use the menu to find what you are looking for",
    ))
    .into_response()
}

/// A signed-in browser user. Pages that need one redirect to the login page otherwise.
pub struct PageCaller(pub Caller);

impl PageCaller {
    pub fn csrf(&self) -> &str {
        self.0.csrf.as_deref().unwrap_or("")
    }

    /// Refuses a form whose CSRF value is not this session's.
    pub fn check_csrf(&self, submitted: &str) -> Result<(), PageError> {
        let expected = self.csrf();
        if expected.is_empty() || !voxhub_core::secret::digests_match(expected, submitted) {
            return Err(PageError(ApiError::forbidden(
                "this form has expired or did not come from voxhub; go back, reload the page and try again",
            )));
        }
        Ok(())
    }
}

impl FromRequestParts<AppState> for PageCaller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let login = || {
            let next = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            let target = if parts.method == axum::http::Method::GET && next != "/" {
                format!("/login?next={}", url_escape(next))
            } else {
                "/login".into()
            };
            Redirect::to(&target).into_response()
        };
        let Some(secret) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(login());
        };
        match authenticate_secret(state, secret).await {
            Ok(caller) if caller.csrf.is_some() => Ok(PageCaller(caller)),
            Ok(_) => Err(login()),
            Err(error) if error.code == "account_disabled" => Err(PageError(error).into_response()),
            Err(_) => Err(login()),
        }
    }
}

/// An error shown as a page of its own, with what to do next.
pub struct PageError(pub ApiError);

impl From<ApiError> for PageError {
    fn from(error: ApiError) -> Self {
        PageError(error)
    }
}

impl From<axum::extract::rejection::FormRejection> for PageError {
    fn from(rejection: axum::extract::rejection::FormRejection) -> Self {
        PageError(rejection.into())
    }
}

impl From<axum::extract::rejection::PathRejection> for PageError {
    fn from(rejection: axum::extract::rejection::PathRejection) -> Self {
        PageError(rejection.into())
    }
}

impl From<axum::extract::rejection::QueryRejection> for PageError {
    fn from(rejection: axum::extract::rejection::QueryRejection) -> Self {
        PageError(rejection.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let title = match self.0.status {
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::UNAUTHORIZED => "Please log in",
            status if status.is_server_error() => "Something went wrong",
            _ => "That did not work",
        };
        let body = bare_page(
            title,
            html! {
                main { div.card.narrow {
                    h1 { (title) }
                    p.notice.error role="alert" { (self.0.message) }
                    p { a href="/" { "Back to the dashboard" } }
                } }
            },
        );
        (self.0.status, body).into_response()
    }
}

/// Form extraction whose rejections become error pages.
#[derive(axum::extract::FromRequest)]
#[from_request(via(axum::Form), rejection(PageError))]
pub struct PageForm<T>(pub T);

#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(PageError))]
pub struct PagePath<T>(pub T);

#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(PageError))]
pub struct PageQuery<T>(pub T);

pub fn url_escape(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A message shown at the top of a page after a change.
pub enum Notice {
    Ok(String),
    Error(String),
}

impl Notice {
    fn render(&self) -> Markup {
        match self {
            Notice::Ok(text) => html! { p.notice.ok role="status" { (text) } },
            Notice::Error(text) => html! { p.notice.error role="alert" { (text) } },
        }
    }
}

/// Success messages named by a fixed code in `?done=`, so a link cannot put words on our pages.
pub fn done_notice(code: Option<&str>) -> Option<Notice> {
    let text = match code? {
        "logged_out" => "You are logged out.",
        "welcome" => "Welcome! Your account is ready and you are in this class.",
        "password_changed" => "Your password was changed. Your other sessions were ended.",
        "profile_changed" => "Your display name was changed.",
        "user_created" => {
            "The account was created. Give the person their username and initial password."
        }
        "user_changed" => "The account was changed.",
        "user_disabled" => "The account was disabled and its sessions ended.",
        "user_enabled" => "The account was enabled.",
        "password_reset" => {
            "The password was set; the person's sessions ended and their API tokens were revoked."
        }
        "class_created" => "The class was created. Next, create an invite code for your students.",
        "class_changed" => "The class was changed.",
        "member_added" => "The member was added.",
        "member_removed" => "The member was removed from the class. Their account still exists.",
        "invite_created" => {
            "The invite code was created. Share it with the people who should join."
        }
        "invite_revoked" => "The invite code was revoked. Nobody else can register with it.",
        "token_revoked" => "The token was revoked and stops working at once.",
        _ => return None,
    };
    Some(Notice::Ok(text.into()))
}

/// A page with no navigation (login, register, errors).
pub fn bare_page(title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · voxhub" }
                link rel="stylesheet" href="/static/voxhub.css";
            }
            body {
                header.top { div.bar { a.brand href="/" { "voxhub" } } }
                (content)
            }
        }
    }
}

/// A page for a signed-in person, with the menu their role allows.
pub fn page(
    caller: &PageCaller,
    current: &str,
    title: &str,
    notice: Option<Notice>,
    content: Markup,
) -> Markup {
    let user = &caller.0.user;
    let mut links = vec![
        ("/", "Dashboard"),
        ("/queue", "Queue"),
        ("/workspace", "Workspace"),
        ("/datasets", "Datasets"),
        ("/classes", "Classes"),
    ];
    if user.role == Role::Admin {
        links.push(("/users", "Users"));
        links.push(("/audit", "Audit log"));
    }
    links.push(("/tokens", "API tokens"));
    links.push(("/account", "Account"));
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · voxhub" }
                link rel="stylesheet" href="/static/voxhub.css";
            }
            body {
                header.top { div.bar {
                    a.brand href="/" { "voxhub" }
                    nav aria-label="Main" {
                        @for (href, label) in &links {
                            @if *href == current { a href=(href) aria-current="page" { (label) } }
                            @else { a href=(href) { (label) } }
                        }
                    }
                    span.who { (user.display_name) " (" (user.role) ")" }
                    form method="post" action="/logout" {
                        input type="hidden" name="csrf" value=(caller.csrf());
                        button type="submit" { "Log out" }
                    }
                } }
                main {
                    @if let Some(notice) = &notice { (notice.render()) }
                    (content)
                }
            }
        }
    }
}

pub fn csrf_field(caller: &PageCaller) -> Markup {
    html! { input type="hidden" name="csrf" value=(caller.csrf()); }
}

/// The hidden field and cookie used by forms shown before login.
pub fn prelogin_csrf(headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    let existing = cookie(headers, PRELOGIN_CSRF_COOKIE)
        .filter(|value| value.len() == 32)
        .map(str::to_string);
    match existing {
        Some(value) => (value, None),
        None => {
            let value = format!("{:032x}", rand::random::<u128>());
            let cookie =
                format!("{PRELOGIN_CSRF_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict");
            (value.clone(), HeaderValue::from_str(&cookie).ok())
        }
    }
}

#[derive(serde::Deserialize)]
struct DashboardQuery {
    done: Option<String>,
}

async fn dashboard(
    State(state): State<AppState>,
    caller: PageCaller,
    PageQuery(query): PageQuery<DashboardQuery>,
) -> Result<Markup, PageError> {
    let me = crate::service::me(&state, &caller.0).await?;
    let classes = crate::service::list_classes(&state, &caller.0).await?;
    let mine = match state.runtime {
        Some(_) => {
            crate::workloads::list(
                &state,
                &caller.0.context("dashboard"),
                crate::workloads::Scope::Mine,
                true,
            )
            .await?
        }
        None => Vec::new(),
    };
    let user = &caller.0.user;
    let content = html! {
        h1 { "Hello, " (user.display_name) }
        @if state.runtime.is_some() {
            div.card {
                h2 style="margin-top:0" { "Your work" }
                p { a.button href="/environments/new" { "New environment" } " " a href="/jobs/new" { "Submit a job" } " · " a href="/workspace" { "Your workspace" } }
                @if mine.is_empty() { p.muted { "Nothing running or waiting." } }
                @for view in &mine {
                    p { a href={"/workloads/" (view.workload.id)} { (view.workload.name) } " — " (view.state_label)
                        @if let Some(url) = &view.open_url { " · " a href=(url) target="_blank" rel="noopener" { "Open" } } }
                }
            }
        }
        @if user.role == Role::Admin {
            div.grid {
                div.card { h3 { a href="/users" { "Users" } } p.muted { "Create accounts, disable them, reset passwords." } }
                div.card { h3 { a href="/classes" { "Classes" } } p.muted { (classes.len()) " classes on this platform." } }
                div.card { h3 { a href="/audit" { "Audit log" } } p.muted { "Every login and change, tamper-evident." } }
            }
        }
        h2 { "Your classes" }
        @if me.classes.is_empty() {
            div.card {
                @match user.role {
                    Role::Student => p { "You are not in any class yet. Ask your teacher for an invite code." },
                    _ => p { "You are not in any class yet. " a href="/classes" { "Create a class" } " and invite your students." },
                }
            }
        } @else {
            div.grid {
                @for class in &me.classes {
                    div.card {
                        h3 { a href={"/classes/" (class.id)} { (class.name) } }
                        p.muted { "You are a " (class.role) " here." }
                    }
                }
            }
        }
    };
    Ok(page(
        &caller,
        "/",
        "Dashboard",
        done_notice(query.done.as_deref()),
        content,
    ))
}
