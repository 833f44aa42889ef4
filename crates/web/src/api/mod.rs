//! The JSON API under `/api/v1`. Routes are registered only through `utoipa_axum::routes!`,
//! so the OpenAPI document at `/api/openapi.json` is built from the same list the router
//! is (a test checks that every documented route answers, and that no API route is
//! registered any other way).

pub mod audit;
pub mod auth;
pub mod classes;
pub mod datasets;
pub mod health;
pub mod tokens;
pub mod users;
pub mod viewer;
pub mod workloads;

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use axum::Router;
use axum::extract::{FromRequest, FromRequestParts};
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

/// A JSON request body whose rejections are our own error bodies.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// A path parameter whose rejections are our own error bodies.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// A query string whose rejections are our own error bodies.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

#[derive(OpenApi)]
#[openapi(
    info(
        title = "voxhub API",
        description = "Accounts, classes, invite codes, tokens and the audit log of a voxhub platform.\n\n\
            Log in with `POST /api/v1/auth/login` and send the returned token as `Authorization: Bearer <token>`. \
            Every error has the body `{\"error\": {\"code\", \"message\"}}`; the message says what to do."
    ),
    modifiers(&BearerAuth),
    components(schemas(ErrorBody)),
    tags(
        (name = "auth", description = "Logging in and out, registering with an invite code, your own account"),
        (name = "users", description = "Accounts (admins)"),
        (name = "classes", description = "Classes, their members and invite codes"),
        (name = "tokens", description = "Personal API tokens for the command line and scripts"),
        (name = "audit", description = "The tamper-evident audit log (admins)"),
        (name = "workloads", description = "The queue: batch jobs and interactive JupyterLab instances, their logs"),
        (name = "workspace", description = "Your persistent workspace files"),
        (name = "datasets", description = "Imaging datasets: uploads with de-identification, patients, studies, series, thumbnails, NIfTI volumes"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("vxh_…")
                    .build(),
            ),
        );
    }
}

/// The API routes and the OpenAPI document describing exactly them.
pub fn router() -> (Router<AppState>, OpenApiDoc) {
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(auth::router())
        .merge(users::router())
        .merge(classes::router())
        .merge(tokens::router())
        .merge(audit::router())
        .merge(workloads::router())
        .merge(datasets::router())
        .merge(viewer::router())
        .split_for_parts();
    (router, doc)
}

/// `GET /api/openapi.json` and the browsable page at `/api/docs`, served from the binary.
pub fn docs_router(doc: OpenApiDoc) -> Router<AppState> {
    Router::new()
        .merge(utoipa_swagger_ui::SwaggerUi::new("/api/docs").url("/api/openapi.json", doc))
}
