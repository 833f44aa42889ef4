//! Who is calling. API requests carry `Authorization: Bearer <token>`; browsers carry the
//! `voxhub_session` cookie (HttpOnly, SameSite=Lax) and prove each form came from our own
//! page with a CSRF field derived from the session secret.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Method, header};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use voxhub_core::permissions::Actor;
use voxhub_core::secret::{looks_like_token, token_digest};
use voxhub_store::tokens::{TokenKind, TokenRejection};
use voxhub_store::users::User;

pub const SESSION_COOKIE: &str = "voxhub_session";
/// A random value set on the login and register pages, echoed in their forms (no session exists yet).
pub const PRELOGIN_CSRF_COOKIE: &str = "voxhub_csrf";

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
    pub token_id: i64,
    pub kind: TokenKind,
    /// The CSRF value for forms (only for cookie sessions).
    pub csrf: Option<String>,
}

impl Caller {
    pub fn actor(&self) -> Actor {
        Actor {
            user_id: self.user.id,
            role: self.user.role,
        }
    }
}

/// The source address of the request, as recorded in the audit log and used for throttling.
#[derive(Debug, Clone)]
pub struct ClientAddr(pub String);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if state.settings.trust_forwarded_for
            && let Some(forwarded) = parts
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
            // The last entry is the one our own proxy added; earlier ones are whatever the client sent.
            && let Some(nearest) = forwarded
                .rsplit(',')
                .next()
                .map(str::trim)
                .filter(|s| !s.is_empty())
        {
            return Ok(ClientAddr(nearest.chars().take(64).collect()));
        }
        let addr = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string())
            .unwrap_or_else(|| "unknown".into());
        Ok(ClientAddr(addr))
    }
}

/// The CSRF value that belongs to a session secret: only someone holding the cookie can know it.
pub fn csrf_for(secret: &str) -> String {
    hex::encode(&Sha256::digest(format!("voxhub-csrf:{secret}").as_bytes())[..16])
}

/// The value of one cookie sent with a request.
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

fn rejection_error(rejection: TokenRejection) -> ApiError {
    match rejection {
        TokenRejection::Unknown => ApiError::unauthorized(
            "invalid_token",
            "this token is not valid; log in again (POST /api/v1/auth/login or `voxhub login`)",
        ),
        TokenRejection::Revoked => ApiError::unauthorized(
            "token_revoked",
            "this token was revoked; log in again or create a new token",
        ),
        TokenRejection::Expired => ApiError::unauthorized(
            "token_expired",
            "this token has expired; log in again or create a new token",
        ),
        TokenRejection::UserDisabled => ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "account_disabled",
            "your account is disabled; ask an administrator to enable it",
        ),
    }
}

/// Checks a presented secret and returns the caller it belongs to.
pub async fn authenticate_secret(state: &AppState, secret: &str) -> Result<Caller, ApiError> {
    if !looks_like_token(secret) {
        return Err(rejection_error(TokenRejection::Unknown));
    }
    let auth = state
        .store
        .authenticate(&token_digest(secret))
        .await?
        .map_err(rejection_error)?;
    let csrf = (auth.kind == TokenKind::Session).then(|| csrf_for(secret));
    Ok(Caller {
        user: auth.user,
        token_id: auth.token_id,
        kind: auth.kind,
        csrf,
    })
}

/// API callers: a bearer token (a personal API token or a login session token).
impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::unauthorized(
                "unauthenticated",
                "log in first: send 'Authorization: Bearer <token>' with a token from POST /api/v1/auth/login or `voxhub login`",
            ));
        };
        let secret = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "invalid_token",
                    "the Authorization header must look like 'Bearer vxh_…'",
                )
            })?;
        authenticate_secret(state, secret).await
    }
}

/// The caller of a read (GET or HEAD) that a page makes without script, such as a viewer
/// slice shown as an `<img>` or a DICOMweb retrieval from the browser: a bearer token, or
/// else the browser's login session cookie (never an API token put in a cookie). Reads
/// change nothing, so no CSRF value is needed. The cookie is `SameSite=Lax`, which still
/// lets another site send the browser to such an address; a request the browser marks
/// `Sec-Fetch-Site: cross-site` is therefore not taken on the cookie (it would read
/// patient data, and record the read, in the user's name). Anything else needs a bearer
/// token.
pub struct ReadCaller(pub Caller);

impl FromRequestParts<AppState> for ReadCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let read = parts.method == Method::GET || parts.method == Method::HEAD;
        let cross_site = parts
            .headers
            .get("sec-fetch-site")
            .is_some_and(|site| site.as_bytes().eq_ignore_ascii_case(b"cross-site"));
        if read
            && !cross_site
            && !parts.headers.contains_key(header::AUTHORIZATION)
            && let Some(secret) = cookie(&parts.headers, SESSION_COOKIE)
        {
            let caller = authenticate_secret(state, secret).await?;
            if caller.kind == TokenKind::Session {
                return Ok(ReadCaller(caller));
            }
        }
        Caller::from_request_parts(parts, state)
            .await
            .map(ReadCaller)
    }
}
