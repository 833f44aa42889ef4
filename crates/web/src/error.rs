//! The one error type of the HTTP layer and its single mapping from error kind to status.
//! Every 4xx tells the person what was wrong and what to do; every 5xx is logged in full
//! with a request id and shows only that id.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use voxhub_core::InvalidInput;
use voxhub_core::invite::InviteProblem;
use voxhub_core::permissions::Denied;
use voxhub_store::StoreError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The request field the error is about, when there is one.
    pub field: Option<&'static str>,
    pub retry_after_s: Option<u64>,
}

/// The body of every error response.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code such as `invalid_input` or `invite_expired`.
    pub code: String,
    /// What went wrong and what to do about it, in words for people.
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after_s: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// Logs the cause with a fresh request id and returns a 500 that shows only the id.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let request_id = hex_id();
        tracing::error!(request_id, "internal error: {cause}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!(
                "something went wrong on the server (request id {request_id}); try again, and if it keeps happening tell your administrator this id"
            ),
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
}

fn hex_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                field: self.field.map(str::to_string),
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after_s
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(message) => ApiError::not_found(message),
            StoreError::Conflict(message) => ApiError::conflict(message),
            StoreError::Invite(problem) => problem.into(),
            other => ApiError::internal(other),
        }
    }
}

impl From<Denied> for ApiError {
    fn from(denied: Denied) -> Self {
        ApiError::forbidden(denied.0)
    }
}

impl From<InvalidInput> for ApiError {
    fn from(invalid: InvalidInput) -> Self {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_input",
            message: invalid.message,
            field: Some(invalid.field),
            retry_after_s: None,
        }
    }
}

impl From<InviteProblem> for ApiError {
    fn from(problem: InviteProblem) -> Self {
        let status = match problem {
            InviteProblem::Unknown => StatusCode::NOT_FOUND,
            _ => StatusCode::GONE,
        };
        ApiError {
            status,
            code: problem.code(),
            message: problem.to_string(),
            field: Some("invite_code"),
            retry_after_s: None,
        }
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::JsonRejection) -> Self {
        use axum::extract::rejection::JsonRejection as R;
        match rejection {
            R::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the request body as JSON with the header 'Content-Type: application/json'",
            ),
            R::JsonSyntaxError(e) => ApiError::bad_request(
                "malformed_json",
                format!("the request body is not valid JSON: {}", e.body_text()),
            ),
            R::JsonDataError(e) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                format!(
                    "the request body has the wrong shape: {}",
                    clean_serde_message(&e.body_text())
                ),
            ),
            R::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the request body is too large; requests to this API must be smaller than 64 KiB",
            ),
            other => ApiError::new(other.status(), "bad_body", other.body_text()),
        }
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::PathRejection) -> Self {
        ApiError::bad_request(
            "invalid_path",
            format!(
                "the address has a wrong part: {}; ids are whole numbers",
                clean_serde_message(&rejection.body_text())
            ),
        )
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::bad_request(
            "invalid_query",
            format!(
                "the query string is not valid: {}",
                clean_serde_message(&rejection.body_text())
            ),
        )
    }
}

impl From<axum::extract::rejection::FormRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::FormRejection) -> Self {
        let status = rejection.status();
        let status = if status.is_client_error() {
            status
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError::new(
            status,
            "invalid_form",
            format!(
                "the form could not be read: {}",
                clean_serde_message(&rejection.body_text())
            ),
        )
    }
}

/// Drops axum's generic prefixes so the serde detail reads as a sentence.
fn clean_serde_message(raw: &str) -> String {
    raw.trim_start_matches("Failed to deserialize the JSON body into the target type: ")
        .trim_start_matches("Failed to deserialize query string: ")
        .trim_start_matches("Failed to deserialize form body: ")
        .trim_start_matches("Failed to deserialize form: ")
        .to_string()
}
