//! Login, registration with an invite code, logout and the account page.

use super::{
    Notice, PageCaller, PageError, PageForm, PageQuery, bare_page, csrf_field, done_notice, page,
    prelogin_csrf,
};
use crate::AppState;
use crate::auth::{ClientAddr, PRELOGIN_CSRF_COOKIE, SESSION_COOKIE, authenticate_secret, cookie};
use crate::error::ApiError;
use crate::service::{
    self, ChangePasswordRequest, LoginRequest, RegisterRequest, UpdateUserRequest,
};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

/// Only paths on this site may be a login's destination.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => {
            path.to_string()
        }
        _ => "/".into(),
    }
}

fn session_cookie(state: &AppState, secret: &str) -> HeaderValue {
    let secure = if state.settings.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let max_age = state.settings.session_hours * 3600;
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .expect("token secrets are cookie-safe")
}

fn prelogin_ok(headers: &HeaderMap, submitted: &str) -> bool {
    matches!(cookie(headers, PRELOGIN_CSRF_COOKIE), Some(value) if !value.is_empty() && voxhub_core::secret::digests_match(value, submitted))
}

fn expired_form() -> ApiError {
    ApiError::forbidden(
        "this form has expired or cookies are blocked; reload the page, allow cookies for this site and try again",
    )
}

fn with_cookie(markup: Markup, status: StatusCode, cookie: Option<HeaderValue>) -> Response {
    let mut response = (status, markup).into_response();
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
    done: Option<String>,
}

fn login_form(csrf: &str, username: &str, next: &str, notice: Option<Notice>) -> Markup {
    bare_page(
        "Log in",
        html! {
            main { div.card.narrow {
                h1 { "Log in to voxhub" }
                @if let Some(notice) = &notice { (notice.render()) }
                form method="post" action="/login" {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="next" value=(next);
                    label for="username" { "Username" }
                    input #username type="text" name="username" value=(username) autocomplete="username" required autofocus;
                    label for="password" { "Password" }
                    input #password type="password" name="password" autocomplete="current-password" required;
                    p { button type="submit" { "Log in" } }
                }
                p.muted { "New here? " a href="/register" { "Register with an invite code" } " from your teacher." }
            } }
        },
    )
}

pub async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    PageQuery(query): PageQuery<LoginQuery>,
) -> Response {
    let next = safe_next(query.next.as_deref());
    if let Some(secret) = cookie(&headers, SESSION_COOKIE)
        && authenticate_secret(&state, secret)
            .await
            .is_ok_and(|caller| caller.csrf.is_some())
    {
        return Redirect::to(&next).into_response();
    }
    let (csrf, cookie) = prelogin_csrf(&headers);
    with_cookie(
        login_form(&csrf, "", &next, done_notice(query.done.as_deref())),
        StatusCode::OK,
        cookie,
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    csrf: String,
    next: Option<String>,
}

pub async fn login_submit(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    headers: HeaderMap,
    PageForm(form): PageForm<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    let (csrf, cookie) = prelogin_csrf(&headers);
    if !prelogin_ok(&headers, &form.csrf) {
        let error = expired_form();
        return with_cookie(
            login_form(
                &csrf,
                &form.username,
                &next,
                Some(Notice::Error(error.message)),
            ),
            error.status,
            cookie,
        );
    }
    let request = LoginRequest {
        username: form.username.clone(),
        password: form.password,
    };
    match service::login(&state, &source, request, "browser").await {
        Ok(logged_in) => {
            let mut response = Redirect::to(&next).into_response();
            response.headers_mut().append(
                header::SET_COOKIE,
                session_cookie(&state, &logged_in.secret),
            );
            response
        }
        Err(error) => with_cookie(
            login_form(
                &csrf,
                &form.username,
                &next,
                Some(Notice::Error(error.message)),
            ),
            error.status,
            cookie,
        ),
    }
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    csrf: String,
}

pub async fn logout_submit(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PageForm(form): PageForm<CsrfOnly>,
) -> Result<Response, PageError> {
    caller.check_csrf(&form.csrf)?;
    service::logout(&state, &caller.0.context(&source)).await?;
    let mut response = Redirect::to("/login?done=logged_out").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static("voxhub_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
    );
    Ok(response)
}

#[derive(Deserialize, Default)]
pub struct RegisterQuery {
    code: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct RegisterForm {
    #[serde(default)]
    invite_code: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_again: String,
    #[serde(default)]
    csrf: String,
}

fn register_form(csrf: &str, form: &RegisterForm, notice: Option<Notice>) -> Markup {
    bare_page(
        "Register",
        html! {
            main { div.card.narrow {
                h1 { "Join your class" }
                p.muted { "Your teacher gave you an invite code. With it you create your account and join the class in one step." }
                @if let Some(notice) = &notice { (notice.render()) }
                form method="post" action="/register" {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="invite_code" { "Invite code " span.hint { "(like ABCD-EFGH-JKMN)" } }
                    input #invite_code type="text" name="invite_code" value=(form.invite_code) required autocomplete="off";
                    label for="display_name" { "Your name " span.hint { "(as your teacher should see it)" } }
                    input #display_name type="text" name="display_name" value=(form.display_name) required maxlength="100" autocomplete="name";
                    label for="reg_username" { "Username " span.hint { "(3–32 letters, digits, . _ -; you log in with it)" } }
                    input #reg_username type="text" name="username" value=(form.username) required maxlength="32" autocomplete="username";
                    label for="reg_password" { "Password " span.hint { "(at least 10 characters)" } }
                    input #reg_password type="password" name="password" required minlength="10" autocomplete="new-password";
                    label for="reg_password_again" { "Password again" }
                    input #reg_password_again type="password" name="password_again" required minlength="10" autocomplete="new-password";
                    p { button type="submit" { "Create my account" } }
                }
                p.muted { "Already have an account? " a href="/login" { "Log in" } }
            } }
        },
    )
}

pub async fn register_page(
    headers: HeaderMap,
    PageQuery(query): PageQuery<RegisterQuery>,
) -> Response {
    let (csrf, cookie) = prelogin_csrf(&headers);
    let form = RegisterForm {
        invite_code: query.code.unwrap_or_default(),
        ..Default::default()
    };
    with_cookie(register_form(&csrf, &form, None), StatusCode::OK, cookie)
}

pub async fn register_submit(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    headers: HeaderMap,
    PageForm(form): PageForm<RegisterForm>,
) -> Response {
    let (csrf, cookie) = prelogin_csrf(&headers);
    let fail = |error: ApiError, form: &RegisterForm| {
        with_cookie(
            register_form(&csrf, form, Some(Notice::Error(error.message))),
            error.status,
            cookie.clone(),
        )
    };
    if !prelogin_ok(&headers, &form.csrf) {
        return fail(expired_form(), &form);
    }
    if form.password != form.password_again {
        return fail(
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
                "the two passwords differ; type the same password twice",
            ),
            &form,
        );
    }
    let request = RegisterRequest {
        invite_code: form.invite_code.clone(),
        username: form.username.clone(),
        password: form.password.clone(),
        display_name: form.display_name.clone(),
    };
    let (user, class_id, _) = match service::register(&state, &source, request).await {
        Ok(done) => done,
        Err(error) => return fail(error, &form),
    };
    let login = LoginRequest {
        username: user.username.clone(),
        password: form.password.clone(),
    };
    match service::login(&state, &source, login, "browser").await {
        Ok(logged_in) => {
            let mut response =
                Redirect::to(&format!("/classes/{class_id}?done=welcome")).into_response();
            response.headers_mut().append(
                header::SET_COOKIE,
                session_cookie(&state, &logged_in.secret),
            );
            response
        }
        Err(_) => Redirect::to("/login").into_response(),
    }
}

#[derive(Deserialize)]
pub struct DoneQuery {
    done: Option<String>,
}

fn account_content(caller: &PageCaller) -> Markup {
    let user = &caller.0.user;
    html! {
        h1 { "Your account" }
        div.card {
            p { "Username: " strong { (user.username) } " · Role: " strong { (user.role) } }
            form method="post" action="/account/profile" {
                (csrf_field(caller))
                label for="display_name" { "Display name" }
                div.row {
                    input #display_name type="text" name="display_name" value=(user.display_name) required maxlength="100";
                    div.shrink { button type="submit" { "Save" } }
                }
            }
        }
        div.card {
            h2 { "Change your password" }
            form method="post" action="/account/password" {
                (csrf_field(caller))
                label for="current_password" { "Current password" }
                input #current_password type="password" name="current_password" required autocomplete="current-password";
                label for="new_password" { "New password " span.hint { "(at least 10 characters)" } }
                input #new_password type="password" name="new_password" required minlength="10" autocomplete="new-password";
                label for="new_password_again" { "New password again" }
                input #new_password_again type="password" name="new_password_again" required minlength="10" autocomplete="new-password";
                p { button type="submit" { "Change password" } }
            }
            p.muted { "Changing your password logs you out everywhere else." }
        }
    }
}

pub async fn account_page(caller: PageCaller, PageQuery(query): PageQuery<DoneQuery>) -> Markup {
    page(
        &caller,
        "/account",
        "Account",
        done_notice(query.done.as_deref()),
        account_content(&caller),
    )
}

#[derive(Deserialize)]
pub struct PasswordForm {
    csrf: String,
    current_password: String,
    new_password: String,
    new_password_again: String,
}

pub async fn password_submit(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PageForm(form): PageForm<PasswordForm>,
) -> Result<Response, PageError> {
    caller.check_csrf(&form.csrf)?;
    let error_page = |message: String, status: StatusCode| {
        (
            status,
            page(
                &caller,
                "/account",
                "Account",
                Some(Notice::Error(message)),
                account_content(&caller),
            ),
        )
            .into_response()
    };
    if form.new_password != form.new_password_again {
        return Ok(error_page(
            "the two new passwords differ; type the same password twice".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ));
    }
    let request = ChangePasswordRequest {
        current_password: form.current_password,
        new_password: form.new_password,
    };
    match service::change_password(&state, &caller.0.context(&source), request).await {
        Ok(()) => Ok(Redirect::to("/account?done=password_changed").into_response()),
        Err(error) if error.status.is_client_error() => Ok(error_page(error.message, error.status)),
        Err(error) => Err(error.into()),
    }
}

#[derive(Deserialize)]
pub struct ProfileForm {
    csrf: String,
    display_name: String,
}

pub async fn profile_submit(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PageForm(form): PageForm<ProfileForm>,
) -> Result<Response, PageError> {
    caller.check_csrf(&form.csrf)?;
    let request = UpdateUserRequest {
        display_name: Some(form.display_name),
        ..Default::default()
    };
    service::update_user(
        &state,
        &caller.0.context(&source),
        caller.0.user.id,
        request,
    )
    .await?;
    Ok(Redirect::to("/account?done=profile_changed").into_response())
}
