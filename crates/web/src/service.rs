//! Every operation of the platform, shared by the JSON API and the web pages: validate the
//! input, check permission, make the change and write its audit entry in one transaction.
//! Refusals of changes are audited too.

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use serde::{Deserialize, Serialize};
use voxhub_core::InvalidInput;
use voxhub_core::audit::{NewEntry, Outcome};
use voxhub_core::duration::parse_duration_s;
use voxhub_core::invite::{MAX_LIFETIME_S, MAX_USES_LIMIT};
use voxhub_core::names::{self, Username};
use voxhub_core::password::{Password, dummy_hash};
use voxhub_core::permissions::{self, ClassView, Denied};
use voxhub_core::role::{ClassRole, Role};
use voxhub_core::secret::normalize_invite_code;
use voxhub_store::audit::{AuditFilter, Verified};
use voxhub_store::classes::{Class, ClassFields, Member, MyClass};
use voxhub_store::invites::{Invite, NewInvite};
use voxhub_store::tokens::{Token, TokenKind};
use voxhub_store::users::{NewUser, User, UserChanges};
use voxhub_store::{StoreError, now_ms, now_s};

// ---------------------------------------------------------------------------------------
// Requests and responses
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LoginResponse {
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    pub user: User,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub invite_code: String,
    pub username: String,
    pub password: String,
    pub display_name: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MeResponse {
    pub user: User,
    pub classes: Vec<MyClass>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    pub username: String,
    pub display_name: String,
    pub role: Role,
    /// The initial password; the person should change it after their first login.
    pub password: String,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    pub display_name: Option<String>,
    pub role: Option<Role>,
    pub disabled: Option<bool>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetPasswordRequest {
    pub password: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    pub current_password: String,
    pub new_password: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClassRequest {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// First day, `YYYY-MM-DD`.
    pub starts_on: String,
    /// Last day, `YYYY-MM-DD`.
    pub ends_on: String,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateClassRequest {
    pub name: Option<String>,
    pub description: Option<String>,
    pub starts_on: Option<String>,
    pub ends_on: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClassResponse {
    #[serde(flatten)]
    pub class: Class,
    /// The caller's role in the class, if they are in it.
    pub my_role: Option<ClassRole>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMemberRequest {
    pub username: String,
    pub role: ClassRole,
}

fn default_invite_expiry() -> String {
    "14d".into()
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInviteRequest {
    /// The role people who register with the code get in the class.
    pub role: ClassRole,
    /// How many people can register with the code (1 to 10000).
    pub max_uses: i64,
    /// How long the code works, e.g. `14d`, `12h`, `2w` (at most a year). Default `14d`.
    #[serde(default = "default_invite_expiry")]
    pub expires_in: String,
}

fn default_token_expiry() -> String {
    "90d".into()
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// What the token is for, e.g. `laptop` or `grading script`.
    pub name: String,
    /// How long the token works, e.g. `30d` (at most a year). Default `90d`.
    #[serde(default = "default_token_expiry")]
    pub expires_in: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    pub token: Token,
    /// The secret, shown this once only: store it now.
    pub secret: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditVerifyResponse {
    /// True when every entry matches its hash and none is missing.
    pub intact: bool,
    pub entries_checked: i64,
    /// Hash of the last entry; note it down to detect a later rewrite of the whole log.
    pub head_hash: Option<String>,
    /// What is wrong, naming the first altered or removed entry.
    pub problem: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Audit helpers
// ---------------------------------------------------------------------------------------

/// The caller and where they are, for audit entries.
pub struct Context<'a> {
    pub caller: &'a Caller,
    pub source: &'a str,
}

impl Caller {
    /// This caller, acting from `source`.
    pub fn context<'a>(&'a self, source: &'a str) -> Context<'a> {
        Context {
            caller: self,
            source,
        }
    }
}

impl Context<'_> {
    pub(crate) fn entry(
        &self,
        action: &str,
        target: String,
        outcome: Outcome,
        detail: String,
        admin_power: bool,
    ) -> NewEntry {
        NewEntry {
            actor_id: Some(self.caller.user.id),
            actor_name: self.caller.user.username.clone(),
            action: action.into(),
            target,
            source: self.source.into(),
            outcome,
            detail,
            admin_power,
        }
    }

    /// True when the caller is an admin acting on something that is not their own.
    fn admin_power_over(&self, owner_id: Option<i64>) -> bool {
        self.caller.user.role == Role::Admin && owner_id != Some(self.caller.user.id)
    }
}

async fn record(state: &AppState, entry: NewEntry) -> Result<(), ApiError> {
    let mut tx = state.store.begin().await?;
    tx.audit(entry).await?;
    tx.commit().await?;
    Ok(())
}

/// Passes an allowed check through; records a refused one and turns it into a 403.
pub(crate) async fn allowed<T>(
    ctx: &Context<'_>,
    state: &AppState,
    action: &str,
    target: &str,
    check: Result<T, Denied>,
) -> Result<T, ApiError> {
    match check {
        Ok(value) => Ok(value),
        Err(denied) => {
            record(
                state,
                ctx.entry(
                    action,
                    target.into(),
                    Outcome::Denied,
                    denied.0.clone(),
                    false,
                ),
            )
            .await?;
            Err(denied.into())
        }
    }
}

/// Records a read that only admin power allowed (an admin looking at something that is not
/// theirs); reads of one's own things are not recorded.
async fn audit_admin_read(
    state: &AppState,
    ctx: &Context<'_>,
    action: &str,
    target: String,
    used_admin_power: bool,
) -> Result<(), ApiError> {
    if used_admin_power {
        record(
            state,
            ctx.entry(action, target, Outcome::Success, String::new(), true),
        )
        .await?;
    }
    Ok(())
}

fn user_target(user: &User) -> String {
    format!("user:{} {}", user.id, user.username)
}

fn class_target(class: &Class) -> String {
    format!("class:{} {}", class.id, class.name)
}

// ---------------------------------------------------------------------------------------
// Passwords (hashing is bounded so a login rush cannot exhaust memory)
// ---------------------------------------------------------------------------------------

async fn hash_password(state: &AppState, password: Password) -> Result<String, ApiError> {
    state
        .hashing
        .run(move || password.hash())
        .await
        .map_err(ApiError::internal)
}

async fn verify_password(
    state: &AppState,
    password: Password,
    hash: String,
) -> Result<bool, ApiError> {
    state
        .hashing
        .run(move || password.verify(&hash))
        .await
        .map_err(ApiError::internal)
}

// ---------------------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------------------

/// A successful login: the session secret and the account.
pub struct LoggedIn {
    pub secret: String,
    pub expires_at: i64,
    pub user: User,
}

fn failed_login_entry(typed: &str, user: Option<&User>, source: &str, detail: &str) -> NewEntry {
    NewEntry {
        actor_id: user.map(|u| u.id),
        actor_name: typed.chars().take(64).collect(),
        action: "auth.login".into(),
        target: user
            .map(user_target)
            .unwrap_or_else(|| "user:unknown".into()),
        source: source.into(),
        outcome: Outcome::Failure,
        detail: detail.into(),
        admin_power: false,
    }
}

pub async fn login(
    state: &AppState,
    source: &str,
    request: LoginRequest,
    session_name: &str,
) -> Result<LoggedIn, ApiError> {
    let typed = request.username.trim().to_lowercase();
    if typed.is_empty() || request.password.is_empty() {
        return Err(ApiError::from(InvalidInput::new(
            "username",
            "enter both your username and your password",
        )));
    }
    let throttle_key: String = typed.chars().take(64).collect();
    let now = now_ms() as u64;
    let throttled =
        state
            .throttle
            .lock()
            .map_err(ApiError::internal)?
            .check(&throttle_key, source, now);
    if let Err(throttled) = throttled {
        record(
            state,
            failed_login_entry(
                &typed,
                None,
                source,
                "refused without checking: too many failed logins",
            ),
        )
        .await?;
        let mut error = ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            throttled.to_string(),
        );
        error.retry_after_s = Some(throttled.retry_after_s.max(1));
        return Err(error);
    }
    let password = Password::for_login(&request.password)?;
    let record_row = match Username::parse(&typed) {
        Ok(username) => state.store.login_record(username.as_str()).await?,
        Err(_) => None,
    };
    // An unknown username costs the same hash as a known one, so timing tells nothing.
    let (user, hash) = match record_row {
        Some((user, hash)) => (Some(user), hash),
        None => (None, dummy_hash().to_string()),
    };
    let matches = verify_password(state, password, hash).await?;
    let user = match user {
        Some(user) if matches => user,
        known => {
            state
                .throttle
                .lock()
                .map_err(ApiError::internal)?
                .record_failure(&throttle_key, source, now);
            record(
                state,
                failed_login_entry(&typed, known.as_ref(), source, "wrong username or password"),
            )
            .await?;
            return Err(ApiError::unauthorized(
                "wrong_credentials",
                "wrong username or password; check both and try again (usernames are not case-sensitive)",
            ));
        }
    };
    if user.disabled {
        record(
            state,
            failed_login_entry(&typed, Some(&user), source, "account is disabled"),
        )
        .await?;
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "account_disabled",
            "your account is disabled; ask an administrator to enable it",
        ));
    }
    state
        .throttle
        .lock()
        .map_err(ApiError::internal)?
        .record_success(&throttle_key);
    let expires_at = now_s() + state.settings.session_hours * 3600;
    let mut tx = state.store.begin().await?;
    let (_, secret) = tx
        .create_token(user.id, TokenKind::Session, session_name, expires_at)
        .await?;
    tx.audit(NewEntry {
        actor_id: Some(user.id),
        actor_name: user.username.clone(),
        action: "auth.login".into(),
        target: user_target(&user),
        source: source.into(),
        outcome: Outcome::Success,
        detail: session_name.into(),
        admin_power: false,
    })
    .await?;
    tx.commit().await?;
    Ok(LoggedIn {
        secret: secret.secret,
        expires_at,
        user,
    })
}

pub async fn logout(state: &AppState, ctx: &Context<'_>) -> Result<(), ApiError> {
    if ctx.caller.kind != TokenKind::Session {
        return Err(ApiError::bad_request(
            "not_a_session",
            "this request used a personal API token, not a login session; revoke the token instead (DELETE /api/v1/tokens/{id})",
        ));
    }
    let mut tx = state.store.begin().await?;
    tx.revoke_token(ctx.caller.token_id).await?;
    tx.audit(ctx.entry(
        "auth.logout",
        user_target(&ctx.caller.user),
        Outcome::Success,
        String::new(),
        false,
    ))
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Registration with an invite code: validates everything before using the code, and
/// creates nothing when any part fails.
pub async fn register(
    state: &AppState,
    source: &str,
    request: RegisterRequest,
) -> Result<(User, i64, String), ApiError> {
    let username = Username::parse(&request.username)?;
    let display_name = names::plain_text(
        "display_name",
        &request.display_name,
        names::DISPLAY_NAME_MAX_CHARS,
    )?;
    let password = Password::new_checked(&request.password, username.as_str())?;
    let failure = |detail: String| NewEntry {
        actor_id: None,
        actor_name: username.to_string(),
        action: "auth.register".into(),
        target: format!(
            "invite:{}",
            request.invite_code.chars().take(20).collect::<String>()
        ),
        source: source.into(),
        outcome: Outcome::Failure,
        detail,
        admin_power: false,
    };
    let Some(code) = normalize_invite_code(&request.invite_code) else {
        let problem = voxhub_core::invite::InviteProblem::Unknown;
        record(state, failure(problem.to_string())).await?;
        return Err(problem.into());
    };
    let hash = hash_password(state, password).await?;
    let mut tx = state.store.begin().await?;
    let outcome = tx
        .register_with_invite(
            &code,
            NewUser {
                username: &username,
                display_name: &display_name,
                role: Role::Student,
                password_hash: &hash,
            },
        )
        .await;
    let registration = match outcome {
        Ok(registration) => registration,
        Err(error) => {
            drop(tx);
            let error = ApiError::from(error);
            if error.status.is_client_error() {
                record(state, failure(error.message.clone())).await?;
            }
            return Err(error);
        }
    };
    tx.audit(NewEntry {
        actor_id: Some(registration.user.id),
        actor_name: registration.user.username.clone(),
        action: "auth.register".into(),
        target: format!(
            "class:{} {}",
            registration.class_id, registration.class_name
        ),
        source: source.into(),
        outcome: Outcome::Success,
        detail: format!(
            "invite:{} {code} as {}",
            registration.invite_id, registration.role
        ),
        admin_power: false,
    })
    .await?;
    tx.commit().await?;
    Ok((
        registration.user,
        registration.class_id,
        registration.class_name,
    ))
}

pub async fn me(state: &AppState, caller: &Caller) -> Result<MeResponse, ApiError> {
    Ok(MeResponse {
        user: caller.user.clone(),
        classes: state.store.memberships_of(caller.user.id).await?,
    })
}

pub async fn change_password(
    state: &AppState,
    ctx: &Context<'_>,
    request: ChangePasswordRequest,
) -> Result<(), ApiError> {
    let user = &ctx.caller.user;
    let current = Password::for_login(&request.current_password)?;
    let stored = state.store.password_hash(user.id).await?;
    if !verify_password(state, current, stored).await? {
        record(
            state,
            ctx.entry(
                "user.password_change",
                user_target(user),
                Outcome::Failure,
                "wrong current password".into(),
                false,
            ),
        )
        .await?;
        let mut error = ApiError::from(InvalidInput::new(
            "current_password",
            "the current password is wrong; type the password you logged in with",
        ));
        error.status = axum::http::StatusCode::FORBIDDEN;
        return Err(error);
    }
    let new =
        Password::new_checked(&request.new_password, &user.username).map_err(|mut invalid| {
            invalid.field = "new_password";
            invalid
        })?;
    let hash = hash_password(state, new).await?;
    let mut tx = state.store.begin().await?;
    tx.set_password_hash(user.id, &hash).await?;
    let ended = tx
        .revoke_sessions_of(user.id, Some(ctx.caller.token_id))
        .await?;
    tx.audit(ctx.entry(
        "user.password_change",
        user_target(user),
        Outcome::Success,
        format!("{ended} other sessions ended"),
        false,
    ))
    .await?;
    tx.commit().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------------------

pub async fn list_users(
    state: &AppState,
    ctx: &Context<'_>,
    search: Option<&str>,
) -> Result<Vec<User>, ApiError> {
    allowed(
        ctx,
        state,
        "user.list",
        "users",
        permissions::require_admin(&ctx.caller.actor(), "list all users"),
    )
    .await?;
    let users = state
        .store
        .list_users(search.map(str::trim).filter(|s| !s.is_empty()))
        .await?;
    audit_admin_read(state, ctx, "user.list", "users".into(), true).await?;
    Ok(users)
}

pub async fn create_user(
    state: &AppState,
    ctx: &Context<'_>,
    request: CreateUserRequest,
) -> Result<User, ApiError> {
    allowed(
        ctx,
        state,
        "user.create",
        "user:new",
        permissions::require_admin(&ctx.caller.actor(), "create users"),
    )
    .await?;
    let username = Username::parse(&request.username)?;
    let display_name = names::plain_text(
        "display_name",
        &request.display_name,
        names::DISPLAY_NAME_MAX_CHARS,
    )?;
    let password = Password::new_checked(&request.password, username.as_str())?;
    let hash = hash_password(state, password).await?;
    let mut tx = state.store.begin().await?;
    let user = tx
        .create_user(NewUser {
            username: &username,
            display_name: &display_name,
            role: request.role,
            password_hash: &hash,
        })
        .await?;
    tx.audit(ctx.entry(
        "user.create",
        user_target(&user),
        Outcome::Success,
        format!("role {}", user.role),
        true,
    ))
    .await?;
    tx.commit().await?;
    Ok(user)
}

pub async fn get_user(state: &AppState, ctx: &Context<'_>, user_id: i64) -> Result<User, ApiError> {
    let target = format!("user:{user_id}");
    allowed(
        ctx,
        state,
        "user.read",
        &target,
        permissions::can_view_user(&ctx.caller.actor(), user_id),
    )
    .await?;
    let user = state.store.user(user_id).await?;
    audit_admin_read(
        state,
        ctx,
        "user.read",
        user_target(&user),
        ctx.admin_power_over(Some(user_id)),
    )
    .await?;
    Ok(user)
}

/// Admins change anything but may not lock themselves (or the platform) out; people may
/// change their own display name.
pub async fn update_user(
    state: &AppState,
    ctx: &Context<'_>,
    user_id: i64,
    request: UpdateUserRequest,
) -> Result<User, ApiError> {
    let actor = ctx.caller.actor();
    let target = format!("user:{user_id}");
    let touches_admin_fields = request.role.is_some() || request.disabled.is_some();
    if touches_admin_fields || user_id != actor.user_id {
        allowed(
            ctx,
            state,
            "user.update",
            &target,
            permissions::require_admin(&actor, "change other accounts, roles or disable accounts"),
        )
        .await?;
    }
    let existing = state.store.user(user_id).await?;
    if user_id == actor.user_id && request.disabled == Some(true) {
        return Err(ApiError::conflict(
            "you cannot disable your own account; ask another admin to do it",
        ));
    }
    if user_id == actor.user_id && request.role.is_some_and(|r| r != Role::Admin) {
        return Err(ApiError::conflict(
            "you cannot take away your own admin role; ask another admin to do it, so the platform always keeps one",
        ));
    }
    let display_name = match &request.display_name {
        Some(raw) => Some(names::plain_text(
            "display_name",
            raw,
            names::DISPLAY_NAME_MAX_CHARS,
        )?),
        None => None,
    };
    let changes = UserChanges {
        display_name,
        role: request.role,
        disabled: request.disabled,
    };
    let mut detail = Vec::new();
    if let Some(name) = &changes.display_name {
        detail.push(format!(
            "display name '{}' -> '{name}'",
            existing.display_name
        ));
    }
    if let Some(role) = changes.role {
        detail.push(format!("role {} -> {role}", existing.role));
    }
    if let Some(disabled) = changes.disabled {
        detail.push(if disabled {
            "disabled".to_string()
        } else {
            "enabled".to_string()
        });
    }
    let action = match changes.disabled {
        Some(true) => "user.disable",
        Some(false) => "user.enable",
        None => "user.update",
    };
    let mut tx = state.store.begin().await?;
    let user = tx.update_user(user_id, &changes).await?;
    if changes.disabled == Some(true) {
        tx.revoke_sessions_of(user_id, None).await?;
    }
    tx.audit(ctx.entry(
        action,
        user_target(&user),
        Outcome::Success,
        detail.join("; "),
        ctx.admin_power_over(Some(user_id)),
    ))
    .await?;
    tx.commit().await?;
    Ok(user)
}

pub async fn reset_password(
    state: &AppState,
    ctx: &Context<'_>,
    user_id: i64,
    request: ResetPasswordRequest,
) -> Result<User, ApiError> {
    let target = format!("user:{user_id}");
    allowed(
        ctx,
        state,
        "user.password_reset",
        &target,
        permissions::require_admin(&ctx.caller.actor(), "reset passwords"),
    )
    .await?;
    let user = state.store.user(user_id).await?;
    let password = Password::new_checked(&request.password, &user.username)?;
    let hash = hash_password(state, password).await?;
    let mut tx = state.store.begin().await?;
    tx.set_password_hash(user_id, &hash).await?;
    let keep = (user_id == ctx.caller.user.id).then_some(ctx.caller.token_id);
    let ended = tx.revoke_all_tokens_of(user_id, keep).await?;
    tx.audit(ctx.entry(
        "user.password_reset",
        user_target(&user),
        Outcome::Success,
        format!("{ended} sessions and API tokens revoked"),
        true,
    ))
    .await?;
    tx.commit().await?;
    Ok(user)
}

// ---------------------------------------------------------------------------------------
// Classes and members
// ---------------------------------------------------------------------------------------

fn parse_date(field: &'static str, raw: &str) -> Result<time::Date, InvalidInput> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(raw.trim(), &format).map_err(|_| {
        InvalidInput::new(
            field,
            format!(
                "'{}' is not a date; write it as YYYY-MM-DD, e.g. 2026-09-01",
                raw.chars().take(40).collect::<String>()
            ),
        )
    })
}

struct ValidClass {
    name: String,
    description: String,
    starts_on: String,
    ends_on: String,
}

impl ValidClass {
    fn check(
        name: &str,
        description: &str,
        starts_on: &str,
        ends_on: &str,
    ) -> Result<Self, InvalidInput> {
        let name = names::plain_text("name", name, names::CLASS_NAME_MAX_CHARS)?;
        let description =
            names::long_text("description", description, names::DESCRIPTION_MAX_CHARS)?;
        let start = parse_date("starts_on", starts_on)?;
        let end = parse_date("ends_on", ends_on)?;
        if end < start {
            return Err(InvalidInput::new(
                "ends_on",
                "the last day of the class comes before its first day; swap the dates",
            ));
        }
        Ok(Self {
            name,
            description,
            starts_on: start.to_string(),
            ends_on: end.to_string(),
        })
    }

    fn fields(&self) -> ClassFields<'_> {
        ClassFields {
            name: &self.name,
            description: &self.description,
            starts_on: &self.starts_on,
            ends_on: &self.ends_on,
        }
    }
}

pub async fn list_classes(state: &AppState, caller: &Caller) -> Result<Vec<Class>, ApiError> {
    if caller.user.role == Role::Admin {
        Ok(state.store.all_classes().await?)
    } else {
        Ok(state.store.classes_of(caller.user.id).await?)
    }
}

pub async fn create_class(
    state: &AppState,
    ctx: &Context<'_>,
    request: ClassRequest,
) -> Result<ClassResponse, ApiError> {
    allowed(
        ctx,
        state,
        "class.create",
        "class:new",
        permissions::can_create_class(&ctx.caller.actor()),
    )
    .await?;
    let valid = ValidClass::check(
        &request.name,
        &request.description,
        &request.starts_on,
        &request.ends_on,
    )?;
    let mut tx = state.store.begin().await?;
    let id = tx.create_class(&valid.fields(), ctx.caller.user.id).await?;
    // A teacher who creates a class teaches it; an admin creates it for others to teach.
    let my_role = (ctx.caller.user.role == Role::Teacher).then_some(ClassRole::Teacher);
    if let Some(role) = my_role {
        tx.put_member(id, ctx.caller.user.id, role, Some(ctx.caller.user.id), None)
            .await?;
    }
    tx.audit(ctx.entry(
        "class.create",
        format!("class:{id} {}", valid.name),
        Outcome::Success,
        format!("{} to {}", valid.starts_on, valid.ends_on),
        false,
    ))
    .await?;
    tx.commit().await?;
    Ok(ClassResponse {
        class: state.store.class(id).await?,
        my_role,
    })
}

/// The class and how much of it the caller may see. An admin reading a class they are not
/// in uses admin power, which is audited.
pub async fn get_class(
    state: &AppState,
    ctx: &Context<'_>,
    class_id: i64,
) -> Result<(ClassResponse, ClassView), ApiError> {
    let class = state.store.class(class_id).await?;
    let my_role = state.store.membership(class_id, ctx.caller.user.id).await?;
    let view = allowed(
        ctx,
        state,
        "class.read",
        &class_target(&class),
        permissions::can_view_class(&ctx.caller.actor(), my_role),
    )
    .await?;
    let admin_power = ctx.caller.user.role == Role::Admin && my_role.is_none();
    audit_admin_read(state, ctx, "class.read", class_target(&class), admin_power).await?;
    Ok((ClassResponse { class, my_role }, view))
}

/// The members the given view may see: everyone, or only the teachers.
pub async fn members_in_view(
    state: &AppState,
    class_id: i64,
    view: ClassView,
) -> Result<Vec<Member>, ApiError> {
    Ok(state
        .store
        .members(class_id, view == ClassView::Member)
        .await?)
}

/// Loads a class and checks that the caller may change it; refusals are audited.
async fn class_for_change(
    state: &AppState,
    ctx: &Context<'_>,
    class_id: i64,
    action: &str,
) -> Result<(Class, bool), ApiError> {
    let class = state.store.class(class_id).await?;
    let my_role = state.store.membership(class_id, ctx.caller.user.id).await?;
    allowed(
        ctx,
        state,
        action,
        &class_target(&class),
        permissions::can_manage_class(&ctx.caller.actor(), my_role),
    )
    .await?;
    let admin_power = ctx.caller.user.role == Role::Admin && my_role != Some(ClassRole::Teacher);
    Ok((class, admin_power))
}

pub async fn update_class(
    state: &AppState,
    ctx: &Context<'_>,
    class_id: i64,
    request: UpdateClassRequest,
) -> Result<ClassResponse, ApiError> {
    let (class, admin_power) = class_for_change(state, ctx, class_id, "class.update").await?;
    let valid = ValidClass::check(
        request.name.as_deref().unwrap_or(&class.name),
        request.description.as_deref().unwrap_or(&class.description),
        request.starts_on.as_deref().unwrap_or(&class.starts_on),
        request.ends_on.as_deref().unwrap_or(&class.ends_on),
    )?;
    let mut tx = state.store.begin().await?;
    tx.update_class(class_id, &valid.fields()).await?;
    tx.audit(ctx.entry(
        "class.update",
        class_target(&class),
        Outcome::Success,
        format!(
            "now '{}', {} to {}",
            valid.name, valid.starts_on, valid.ends_on
        ),
        admin_power,
    ))
    .await?;
    tx.commit().await?;
    let my_role = state.store.membership(class_id, ctx.caller.user.id).await?;
    Ok(ClassResponse {
        class: state.store.class(class_id).await?,
        my_role,
    })
}

pub async fn list_members(
    state: &AppState,
    ctx: &Context<'_>,
    class_id: i64,
) -> Result<Vec<Member>, ApiError> {
    let (_, view) = get_class(state, ctx, class_id).await?;
    members_in_view(state, class_id, view).await
}

pub async fn add_member(
    state: &AppState,
    ctx: &Context<'_>,
    class_id: i64,
    request: AddMemberRequest,
) -> Result<Member, ApiError> {
    let (class, admin_power) = class_for_change(state, ctx, class_id, "class.member_add").await?;
    let username = Username::parse(&request.username)?;
    let user = state
        .store
        .user_by_username(username.as_str())
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "there is no user '{username}'; check the spelling, or create the account first"
            ))
        })?;
    allowed(
        ctx,
        state,
        "class.member_add",
        &class_target(&class),
        permissions::can_grant_class_role(&ctx.caller.actor(), user.role, request.role),
    )
    .await?;
    let mut tx = state.store.begin().await?;
    let previous = tx
        .put_member(
            class_id,
            user.id,
            request.role,
            Some(ctx.caller.user.id),
            None,
        )
        .await?;
    let detail = match previous {
        Some(old) if old == request.role => format!("{} already {}", user.username, old),
        Some(old) => format!("{} {} -> {}", user.username, old, request.role),
        None => format!("{} as {}", user.username, request.role),
    };
    tx.audit(ctx.entry(
        "class.member_add",
        class_target(&class),
        Outcome::Success,
        detail,
        admin_power,
    ))
    .await?;
    tx.commit().await?;
    let members = state.store.members(class_id, false).await?;
    members
        .into_iter()
        .find(|m| m.user_id == user.id)
        .ok_or_else(|| ApiError::internal("member vanished after being added"))
}

pub async fn remove_member(
    state: &AppState,
    ctx: &Context<'_>,
    class_id: i64,
    user_id: i64,
) -> Result<(), ApiError> {
    let (class, admin_power) =
        class_for_change(state, ctx, class_id, "class.member_remove").await?;
    let user = state.store.user(user_id).await?;
    let mut tx = state.store.begin().await?;
    let role = tx.remove_member(class_id, user_id).await?;
    tx.audit(ctx.entry(
        "class.member_remove",
        class_target(&class),
        Outcome::Success,
        format!("{} was {}", user.username, role),
        admin_power,
    ))
    .await?;
    tx.commit().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Invite codes
// ---------------------------------------------------------------------------------------

pub async fn list_invites(
    state: &AppState,
    ctx: &Context<'_>,
    class_id: i64,
) -> Result<Vec<Invite>, ApiError> {
    let class = state.store.class(class_id).await?;
    let my_role = state.store.membership(class_id, ctx.caller.user.id).await?;
    let check = permissions::can_manage_class(&ctx.caller.actor(), my_role).map_err(|_| {
        Denied(format!(
            "only the teachers of '{}' can see its invite codes",
            class.name
        ))
    });
    allowed(ctx, state, "invite.list", &class_target(&class), check).await?;
    let admin_power = ctx.caller.user.role == Role::Admin && my_role != Some(ClassRole::Teacher);
    audit_admin_read(state, ctx, "invite.list", class_target(&class), admin_power).await?;
    Ok(state.store.invites(class_id).await?)
}

pub async fn create_invite(
    state: &AppState,
    ctx: &Context<'_>,
    class_id: i64,
    request: CreateInviteRequest,
) -> Result<Invite, ApiError> {
    let (class, admin_power) = class_for_change(state, ctx, class_id, "invite.create").await?;
    let my_role = state.store.membership(class_id, ctx.caller.user.id).await?;
    let check = permissions::can_create_invite(&ctx.caller.actor(), my_role, request.role);
    allowed(ctx, state, "invite.create", &class_target(&class), check).await?;
    if !(1..=MAX_USES_LIMIT).contains(&request.max_uses) {
        return Err(InvalidInput::new(
            "max_uses",
            format!("the number of uses must be between 1 and {MAX_USES_LIMIT}"),
        )
        .into());
    }
    let lifetime = parse_duration_s("expires_in", &request.expires_in)?;
    if lifetime > MAX_LIFETIME_S {
        return Err(InvalidInput::new(
            "expires_in",
            "an invite code can work for at most a year; choose a shorter time",
        )
        .into());
    }
    let expires_at = now_s() + lifetime;
    let mut tx = state.store.begin().await?;
    let mut attempt = 0;
    let (id, code) = loop {
        let code = voxhub_core::secret::new_invite_code();
        let new = NewInvite {
            class_id,
            code: &code,
            role: request.role,
            max_uses: request.max_uses,
            expires_at,
            created_by: ctx.caller.user.id,
        };
        match tx.create_invite(&new).await {
            Ok(id) => break (id, code),
            Err(StoreError::Conflict(_)) if attempt < 3 => attempt += 1,
            Err(error) => return Err(error.into()),
        }
    };
    tx.audit(ctx.entry(
        "invite.create",
        class_target(&class),
        Outcome::Success,
        format!(
            "invite:{id} {code} {} x{} until {}",
            request.role,
            request.max_uses,
            voxhub_core::timefmt::rfc3339(expires_at)
        ),
        admin_power,
    ))
    .await?;
    tx.commit().await?;
    Ok(state.store.invite(class_id, id).await?)
}

pub async fn revoke_invite(
    state: &AppState,
    ctx: &Context<'_>,
    class_id: i64,
    invite_id: i64,
) -> Result<Invite, ApiError> {
    let (class, admin_power) = class_for_change(state, ctx, class_id, "invite.revoke").await?;
    let mut tx = state.store.begin().await?;
    tx.revoke_invite(class_id, invite_id).await?;
    tx.audit(ctx.entry(
        "invite.revoke",
        class_target(&class),
        Outcome::Success,
        format!("invite:{invite_id}"),
        admin_power,
    ))
    .await?;
    tx.commit().await?;
    Ok(state.store.invite(class_id, invite_id).await?)
}

// ---------------------------------------------------------------------------------------
// Personal API tokens
// ---------------------------------------------------------------------------------------

pub async fn list_tokens(
    state: &AppState,
    ctx: &Context<'_>,
    owner_id: Option<i64>,
) -> Result<Vec<Token>, ApiError> {
    let owner_id = owner_id.unwrap_or(ctx.caller.user.id);
    allowed(
        ctx,
        state,
        "token.list",
        &format!("user:{owner_id}"),
        permissions::can_manage_tokens_of(&ctx.caller.actor(), owner_id),
    )
    .await?;
    let admin_power = ctx.admin_power_over(Some(owner_id));
    audit_admin_read(
        state,
        ctx,
        "token.list",
        format!("user:{owner_id}"),
        admin_power,
    )
    .await?;
    Ok(state.store.tokens_of(owner_id, TokenKind::Api).await?)
}

pub async fn create_token(
    state: &AppState,
    ctx: &Context<'_>,
    request: CreateTokenRequest,
) -> Result<CreatedToken, ApiError> {
    let name = names::plain_text("name", &request.name, names::TOKEN_NAME_MAX_CHARS)?;
    let lifetime = parse_duration_s("expires_in", &request.expires_in)?;
    if lifetime > 366 * 86_400 {
        return Err(InvalidInput::new(
            "expires_in",
            "a token can work for at most a year; choose a shorter time",
        )
        .into());
    }
    let mut tx = state.store.begin().await?;
    let (token, secret) = tx
        .create_token(
            ctx.caller.user.id,
            TokenKind::Api,
            &name,
            now_s() + lifetime,
        )
        .await?;
    tx.audit(ctx.entry(
        "token.create",
        format!("token:{} {}", token.id, token.name),
        Outcome::Success,
        format!(
            "expires {}",
            voxhub_core::timefmt::rfc3339(token.expires_at)
        ),
        false,
    ))
    .await?;
    tx.commit().await?;
    Ok(CreatedToken {
        token,
        secret: secret.secret,
    })
}

pub async fn revoke_token(
    state: &AppState,
    ctx: &Context<'_>,
    token_id: i64,
) -> Result<Token, ApiError> {
    let token = state.store.token(token_id).await?;
    let target = format!("token:{} {}", token.id, token.name);
    allowed(
        ctx,
        state,
        "token.revoke",
        &target,
        permissions::can_manage_tokens_of(&ctx.caller.actor(), token.user_id),
    )
    .await?;
    let mut tx = state.store.begin().await?;
    let token = tx.revoke_token(token_id).await?;
    tx.audit(ctx.entry(
        "token.revoke",
        target,
        Outcome::Success,
        format!("owner user:{}", token.user_id),
        ctx.admin_power_over(Some(token.user_id)),
    ))
    .await?;
    tx.commit().await?;
    Ok(token)
}

// ---------------------------------------------------------------------------------------
// Audit log
// ---------------------------------------------------------------------------------------

pub async fn list_audit(
    state: &AppState,
    ctx: &Context<'_>,
    filter: AuditFilter,
) -> Result<Vec<voxhub_core::audit::Entry>, ApiError> {
    allowed(
        ctx,
        state,
        "audit.list",
        "audit",
        permissions::require_admin(&ctx.caller.actor(), "read the audit log"),
    )
    .await?;
    // Read before recording this read, so the list shows what was there when asked.
    let entries = state.store.list_audit(&filter).await?;
    audit_admin_read(state, ctx, "audit.list", "audit".into(), true).await?;
    Ok(entries)
}

pub async fn verify_audit(
    state: &AppState,
    ctx: &Context<'_>,
) -> Result<AuditVerifyResponse, ApiError> {
    allowed(
        ctx,
        state,
        "audit.verify",
        "audit",
        permissions::require_admin(&ctx.caller.actor(), "verify the audit log"),
    )
    .await?;
    let verified = state.store.verify_audit().await?;
    audit_admin_read(state, ctx, "audit.verify", "audit".into(), true).await?;
    Ok(match verified {
        Ok(Verified { entries, head_hash }) => AuditVerifyResponse {
            intact: true,
            entries_checked: entries,
            head_hash: Some(head_hash),
            problem: None,
        },
        Err(broken) => AuditVerifyResponse {
            intact: false,
            entries_checked: 0,
            head_hash: None,
            problem: Some(broken.to_string()),
        },
    })
}
