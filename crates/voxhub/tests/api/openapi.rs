//! The OpenAPI document describes exactly the routes the server answers, and the browsable
//! docs page works without the internet.

use crate::support::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::PathBuf;

async fn document(app: &TestApp) -> Value {
    let reply = app
        .send(app.builder(Method::GET, "", "/api/openapi.json"))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let content_type = reply
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert!(
        reply.body.is_object(),
        "the document is JSON: {}",
        reply.body
    );
    reply.body
}

/// Every (method, path) in the document.
fn operations(doc: &Value) -> Vec<(Method, String, Value)> {
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            let method =
                Method::from_bytes(method.to_uppercase().as_bytes()).expect("an HTTP method");
            found.push((method, path.clone(), operation.clone()));
        }
    }
    found
}

/// `{id}`, `{user_id}` … replaced by 1.
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => in_param = true,
            '}' => {
                in_param = false;
                out.push('1');
            }
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_json_of_version_3_with_the_bearer_scheme() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let version = doc["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3."), "{version}");
    assert!(doc["info"]["title"].is_string());
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    let ops = operations(&doc);
    assert!(
        ops.len() >= 25,
        "every API route is documented: {}",
        ops.len()
    );
    for (method, path, operation) in &ops {
        assert!(path.starts_with("/api/v1/"), "{path}");
        assert!(
            operation["responses"]
                .as_object()
                .is_some_and(|r| !r.is_empty()),
            "{method} {path} documents its answers"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_answers() {
    let app =
        TestApp::spawn_with_workloads(2, 2048, voxhub_web::runtime::WorkloadSettings::default())
            .await;
    let (status, job) = app
        .post(
            &app.admin.token,
            "/api/v1/jobs",
            json!({"argv": ["true"], "memory": "64M"}),
        )
        .await;
    assert_eq!(
        (status, job["id"].as_i64()),
        (StatusCode::CREATED, Some(1)),
        "{job}"
    );
    // Make id 1 of everything exist: user 1 is the admin, token 1 the admin's session.
    let class = app.create_class(&app.admin.token, "Class one").await;
    assert_eq!(class, 1);
    app.add_member(&app.admin.token, class, "admin", "teacher")
        .await;
    assert_eq!(
        app.create_invite(&app.admin.token, class, "student", 1)
            .await["id"],
        1
    );

    // Dataset 1 with series 1 from upload 1.
    let dataset = app
        .dataset(&app.admin.token, "Dataset one", Some(class))
        .await;
    assert_eq!(dataset, 1);
    let ct = std::fs::read(pydicom_file("CT_small.dcm")).expect("pydicom's CT_small.dcm");
    let (status, report) = app
        .upload(&app.admin.token, dataset, vec![("ct.dcm".into(), ct)])
        .await;
    assert_eq!(
        (status, &report["series"]),
        (StatusCode::OK, &json!([1])),
        "{report}"
    );
    app.derived_series(&app.admin.token, 1).await;

    let doc = document(&app).await;
    let mut operations = operations(&doc);
    // Deletions last, so that what they delete was there for the others.
    operations.sort_by_key(|(method, _, _)| *method == Method::DELETE);
    for (method, path, _) in operations {
        let token = app.session_for(app.admin.id).await;
        let body = matches!(method, Method::POST | Method::PATCH | Method::PUT).then(|| json!({}));
        let url = concrete(&path);
        let (status, reply) = app.call(method.clone(), &token, &url, body).await;
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {url} is documented but not routed: {reply}"
        );
        assert_ne!(
            status,
            StatusCode::NOT_FOUND,
            "{method} {url} is documented but not found: {reply}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_parameters_are_where_the_route_reads_them() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    for (method, path, operation) in operations(&doc) {
        for parameter in operation["parameters"].as_array().into_iter().flatten() {
            let name = parameter["name"].as_str().unwrap();
            match parameter["in"].as_str().unwrap() {
                "path" => assert!(
                    path.contains(&format!("{{{name}}}")),
                    "{method} {path}: path parameter '{name}' is not in the path"
                ),
                "query" => assert_ne!(
                    parameter["required"], true,
                    "{method} {path}: query parameter '{name}' is optional"
                ),
                other => panic!("{method} {path}: unexpected parameter location {other}"),
            }
        }
    }
}

#[test]
fn api_routes_are_registered_only_through_utoipa_routes() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../web/src/api");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        checked += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            assert!(
                !code.contains(".route(") && !code.contains("routing::"),
                "{}:{}: API routes must be registered with utoipa_axum's routes!, so the OpenAPI document lists them:\n{line}",
                path.display(),
                number + 1
            );
        }
    }
    assert!(checked >= 5, "found the API modules in {}", dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_page_is_served_from_the_binary_without_external_scripts_or_styles() {
    let app = TestApp::spawn().await;
    let reply = app.send(app.builder(Method::GET, "", "/api/docs/")).await;
    assert_eq!(reply.status, StatusCode::OK);
    let html = reply.body.as_str().expect("an HTML page").to_string();
    assert!(html.to_lowercase().contains("<html"), "{html}");

    let mut assets = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for (at, _) in html.match_indices(attribute) {
            let rest = &html[at + attribute.len()..];
            let url = &rest[..rest.find('"').unwrap()];
            assert!(
                !url.starts_with("http://")
                    && !url.starts_with("https://")
                    && !url.starts_with("//"),
                "the docs page must not load {url} from elsewhere"
            );
            assets.push(url.to_string());
        }
    }
    assert!(assets.iter().any(|a| a.ends_with(".js")), "{assets:?}");
    for asset in assets {
        let path = format!("/api/docs/{}", asset.trim_start_matches("./"));
        let reply = app.send(app.builder(Method::GET, "", &path)).await;
        assert_eq!(reply.status, StatusCode::OK, "{path} is served");
        if path.ends_with("swagger-initializer.js") {
            let script = reply.body.as_str().unwrap_or_default();
            assert!(
                script.contains("/api/openapi.json"),
                "the page shows our document: {script}"
            );
            assert!(!script.contains("petstore"), "{script}");
        }
    }
}

/// Every `$ref` of the document names a schema it defines, so that generated clients and
/// the documentation can resolve every body.
#[tokio::test]
async fn every_schema_reference_resolves() {
    fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map {
                    match (key.as_str(), inner) {
                        ("$ref", Value::String(target)) => out.push(target),
                        _ => refs(inner, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| refs(item, out)),
            _ => {}
        }
    }
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(
        found.len() > 20,
        "the document uses references: {}",
        found.len()
    );
    let schemas = &doc["components"]["schemas"];
    let mut missing: Vec<&str> = found
        .into_iter()
        .filter(|target| {
            target
                .strip_prefix("#/components/schemas/")
                .is_none_or(|name| !schemas[name].is_object())
        })
        .collect();
    missing.sort();
    missing.dedup();
    assert!(missing.is_empty(), "references not defined: {missing:?}");
}
