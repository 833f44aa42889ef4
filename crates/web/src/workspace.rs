//! Workspace files: listing, downloading and uploading inside a user's own workspace
//! directory. Every path is resolved and checked to stay inside the workspace, symlinks
//! included, so no request can reach another user's files.

use crate::AppState;
use crate::error::ApiError;
use crate::service::Context;
use crate::workloads::{check_relative_path, runtime};
use serde::Serialize;
use std::path::{Path, PathBuf};
use voxhub_core::audit::Outcome;
use voxhub_core::permissions;
use voxhub_store::users::User;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Entry {
    pub name: String,
    /// Path relative to the workspace, to pass back to list or download.
    pub path: String,
    /// `file` or `directory`.
    pub kind: String,
    pub size_bytes: u64,
    #[schema(format = DateTime)]
    pub modified: Option<String>,
}

/// Whose workspace: the caller's, or (admins) another user's.
pub async fn owner(
    state: &AppState,
    ctx: &Context<'_>,
    username: Option<&str>,
) -> Result<User, ApiError> {
    let user = match username.map(str::trim).filter(|u| !u.is_empty()) {
        None => ctx.caller.user.clone(),
        Some(name) => state
            .store
            .user_by_username(&name.to_lowercase())
            .await?
            .ok_or_else(|| ApiError::not_found(format!("there is no user '{name}'")))?,
    };
    let check = permissions::can_use_workspace(&ctx.caller.actor(), user.id);
    crate::service::allowed(
        ctx,
        state,
        "workspace.read",
        &format!("user:{} {}", user.id, user.username),
        check,
    )
    .await?;
    Ok(user)
}

/// The workspace root of a user, created if missing.
pub async fn root_of(state: &AppState, user: &User) -> Result<PathBuf, ApiError> {
    let root = runtime(state)?.workspace_of(&user.username);
    tokio::fs::create_dir_all(&root)
        .await
        .map_err(ApiError::internal)?;
    tokio::fs::canonicalize(&root)
        .await
        .map_err(ApiError::internal)
}

/// Resolves `relative` inside `root`; refuses anything that ends up outside, including
/// through a symlink.
pub async fn resolve(root: &Path, relative: &str, must_exist: bool) -> Result<PathBuf, ApiError> {
    let relative = check_relative_path("path", relative)?;
    let joined = root.join(&relative);
    let resolved = match tokio::fs::canonicalize(&joined).await {
        Ok(path) => path,
        Err(_) if !must_exist => {
            let parent = joined.parent().unwrap_or(root);
            let parent = tokio::fs::canonicalize(parent).await.map_err(|_| {
                ApiError::not_found(format!(
                    "the folder '{}' does not exist in your workspace",
                    Path::new(&relative)
                        .parent()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                ))
            })?;
            parent.join(joined.file_name().unwrap_or_default())
        }
        Err(_) => {
            return Err(ApiError::not_found(format!(
                "'{relative}' does not exist in the workspace"
            )));
        }
    };
    if !resolved.starts_with(root) {
        return Err(ApiError::forbidden(format!(
            "'{relative}' points outside the workspace"
        )));
    }
    Ok(resolved)
}

pub async fn list(
    state: &AppState,
    ctx: &Context<'_>,
    username: Option<&str>,
    relative: &str,
) -> Result<Vec<Entry>, ApiError> {
    let user = owner(state, ctx, username).await?;
    let root = root_of(state, &user).await?;
    let dir = resolve(&root, relative, true).await?;
    let mut reader = tokio::fs::read_dir(&dir).await.map_err(|_| {
        ApiError::bad_request("not_a_directory", format!("'{relative}' is not a folder"))
    })?;
    let mut entries = Vec::new();
    while let Some(item) = reader.next_entry().await.map_err(ApiError::internal)? {
        let Ok(meta) = item.metadata().await else {
            continue;
        };
        let name = item.file_name().to_string_lossy().to_string();
        let path = item
            .path()
            .strip_prefix(&root)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| name.clone());
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| voxhub_core::timefmt::rfc3339(d.as_secs() as i64));
        entries.push(Entry {
            name,
            path,
            kind: if meta.is_dir() {
                "directory".into()
            } else {
                "file".into()
            },
            size_bytes: if meta.is_dir() { 0 } else { meta.len() },
            modified,
        });
        if entries.len() >= 5000 {
            break;
        }
    }
    entries.sort_by(|a, b| {
        (a.kind != "directory", a.name.to_lowercase())
            .cmp(&(b.kind != "directory", b.name.to_lowercase()))
    });
    Ok(entries)
}

/// Opens a file for download; returns its path, size and file name.
pub async fn open_file(
    state: &AppState,
    ctx: &Context<'_>,
    username: Option<&str>,
    relative: &str,
) -> Result<(tokio::fs::File, u64, String), ApiError> {
    let user = owner(state, ctx, username).await?;
    let root = root_of(state, &user).await?;
    let path = resolve(&root, relative, true).await?;
    let meta = tokio::fs::metadata(&path)
        .await
        .map_err(ApiError::internal)?;
    if !meta.is_file() {
        return Err(ApiError::bad_request(
            "not_a_file",
            format!("'{relative}' is a folder; download files one at a time"),
        ));
    }
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(ApiError::internal)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "download".into());
    Ok((file, meta.len(), name))
}

/// Writes an uploaded file atomically (a temporary file renamed into place).
pub async fn save_file(
    state: &AppState,
    ctx: &Context<'_>,
    username: Option<&str>,
    relative: &str,
    bytes: &[u8],
) -> Result<Entry, ApiError> {
    let user = owner(state, ctx, username).await?;
    let root = root_of(state, &user).await?;
    let relative = check_relative_path("path", relative)?;
    if relative.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_path",
            "give the file a name, e.g. data/notes.txt",
        ));
    }
    if let Some(parent) = Path::new(&relative)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
    {
        let parent = resolve(&root, &parent.display().to_string(), false).await?;
        tokio::fs::create_dir_all(&parent)
            .await
            .map_err(ApiError::internal)?;
    }
    let target = resolve(&root, &relative, false).await?;
    if tokio::fs::metadata(&target).await.is_ok_and(|m| m.is_dir()) {
        return Err(ApiError::conflict(format!(
            "'{relative}' is a folder; choose another name"
        )));
    }
    let tmp = target.with_file_name(format!(
        ".{}.upload-{:x}",
        target.file_name().unwrap_or_default().to_string_lossy(),
        rand::random::<u64>()
    ));
    tokio::fs::write(&tmp, bytes)
        .await
        .map_err(ApiError::internal)?;
    tokio::fs::rename(&tmp, &target)
        .await
        .map_err(ApiError::internal)?;
    let mut tx = state.store.begin().await?;
    tx.audit(ctx.entry(
        "workspace.upload",
        format!("user:{} {}", user.id, user.username),
        Outcome::Success,
        format!("{relative} ({} bytes)", bytes.len()),
        user.id != ctx.caller.user.id,
    ))
    .await?;
    tx.commit().await?;
    Ok(Entry {
        name: target
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string(),
        path: relative,
        kind: "file".into(),
        size_bytes: bytes.len() as u64,
        modified: Some(voxhub_core::timefmt::rfc3339(voxhub_store::now_s())),
    })
}
