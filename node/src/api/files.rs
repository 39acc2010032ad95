//! Files (issue 17): `POST /api/v1/conversations/{id}/files?name=NAME[&path=DIR]` sends
//! one (the body is its raw bytes); `GET /api/v1/files/{file_id}` serves a complete
//! one; `…/status`, `…/fetch`, `…/cancel` follow and steer its download; `…/withdraw`
//! and `…/offer` stop and resume sending it; `…/open` and `…/reveal` put a complete
//! one into the folder for received files and open it or show it there on this desktop.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::TryStreamExt;
use tokio_util::io::{StreamReader, SyncIoBridge};

use api_types::{FieldError, FileContent, FileStatusView, MessageView};

use super::conversations::{conversation_id, send_text};
use super::error::ApiError;
use super::params::{Params, Segments};
use super::ApiState;
use crate::files::{self, ExportError, FileError, OpenError, UploadError};

impl From<FileError> for ApiError {
    fn from(e: FileError) -> Self {
        match e {
            FileError::NotFound => ApiError::not_found(),
            FileError::NotComplete => ApiError::new(
                StatusCode::CONFLICT,
                "not_complete",
                "the file is not complete here yet: see its status",
            ),
            FileError::Store(e) => e.into(),
            FileError::Blob(e) => blob_error(e),
            FileError::Export(e) => export_error(e),
            FileError::Open(e @ OpenError::NoDesktop) => {
                ApiError::new(StatusCode::CONFLICT, "no_desktop", e.to_string())
            }
            FileError::Open(e @ OpenError::Spawn { .. }) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "open_failed",
                e.to_string(),
            ),
            FileError::Task(e) => ApiError::internal(e),
        }
    }
}

fn export_error(e: ExportError) -> ApiError {
    match e {
        ExportError::NotComplete => FileError::NotComplete.into(),
        ExportError::Blob(e) => blob_error(e),
        e @ ExportError::DiskFull { .. } => {
            ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "disk_full", e.to_string())
        }
        e @ (ExportError::NoFolder | ExportError::Io { .. } | ExportError::NoFreeName { .. }) => {
            ApiError::internal(e.to_string())
        }
    }
}

fn blob_error(e: storage::BlobError) -> ApiError {
    use storage::blobs::BlobError;
    match e {
        BlobError::TooLarge { max } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("a file is at most {max} bytes"),
        ),
        e if e
            .fault_kind()
            .is_some_and(|k| k == storage::WriteFaultKind::DiskFull) =>
        {
            ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "disk_full",
                format!("the disk is full: {e}"),
            )
        }
        e => ApiError::internal(e.to_string()),
    }
}

impl From<UploadError> for ApiError {
    fn from(e: UploadError) -> Self {
        match e {
            UploadError::Name { field, reason } => FieldError::new(field, reason).into(),
            UploadError::Blob(e) => blob_error(e),
            UploadError::Task(e) => ApiError::internal(e),
        }
    }
}

/// Files stored with `POST /api/v1/files`, sent together as one message.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBatch {
    files: Vec<BatchFile>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchFile {
    file_id: String,
    name: String,
    #[serde(default)]
    path: Option<String>,
}

/// `POST /api/v1/files` (body: the bytes) → `201 {"file_id", "size"}`: stores a file
/// without sending it, for a message of several files (a folder) sent next with
/// `POST /api/v1/conversations/{id}/files` and a JSON list.
pub async fn store(
    State(state): State<ApiState>,
    body: Body,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let blobs = state.files().blobs().clone();
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let reader = SyncIoBridge::new(StreamReader::new(stream));
    let (file_id, manifest) =
        tokio::task::spawn_blocking(move || files::import_upload(&blobs, reader))
            .await
            .map_err(|e| UploadError::Task(e.to_string()))??;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"file_id": file_id.to_string(), "size": manifest.size()})),
    ))
}

/// `POST /api/v1/conversations/{id}/files` → `201` and the file message: with
/// `?name=NAME[&path=DIR]` the body is one file's bytes; with
/// `Content-Type: application/json` it is `{"files": [{"file_id", "name", "path"?}…]}`
/// (1–64 files stored before with `POST /api/v1/files`), sent as one message.
pub async fn upload(
    State(state): State<ApiState>,
    Segments(id): Segments<String>,
    params: Params,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<MessageView>), ApiError> {
    let conversation = conversation_id(&id)?;
    if params.get("name").is_none() && super::json_body::is_json(&headers) {
        let bytes = axum::body::to_bytes(body, BATCH_BODY_BYTES)
            .await
            .map_err(|e| ApiError::bad_request(format!("cannot read the body: {e}")))?;
        let batch: FileBatch = super::json_body::parse(&headers, &bytes)?;
        let content = describe_batch(&state, batch).await?;
        let view = send_text(&state, conversation, content).await?;
        return Ok((StatusCode::CREATED, Json(view)));
    }
    let Some(name) = params.get("name") else {
        return Err(FieldError::new("name", "the file's name is required (?name=)").into());
    };
    let (name, path) = files::checked_name(name, params.get("path"))?;
    let blobs = state.files().blobs().clone();
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let reader = SyncIoBridge::new(StreamReader::new(stream));
    let described = tokio::task::spawn_blocking(move || {
        let (file_id, manifest) = files::import_upload(&blobs, reader)?;
        files::describe(&blobs, file_id, &manifest, name, path)
    })
    .await
    .map_err(|e| UploadError::Task(e.to_string()))??;
    tracing::info!(file = %described.file_id, size = described.size, mime = %described.mime, "file stored for sending");
    let text = FileContent {
        files: vec![described],
    }
    .to_text()
    .map_err(|e| FieldError::new("name", e.to_string()))?;
    let view = send_text(&state, conversation, text).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// A batch's JSON: 64 entries of a name, a folder and an id, with room to spare.
const BATCH_BODY_BYTES: usize = 256 * 1024;

/// The file message's text for a batch: every file complete in the blob store, its
/// name and folder checked, described from the store (never from the request).
async fn describe_batch(state: &ApiState, batch: FileBatch) -> Result<String, ApiError> {
    if batch.files.is_empty() || batch.files.len() > api_types::files::MAX_FILES_PER_MESSAGE {
        return Err(FieldError::new("files", "a message holds 1 to 64 files").into());
    }
    let mut checked = Vec::with_capacity(batch.files.len());
    for file in batch.files {
        let id: storage::FileId = file
            .file_id
            .parse()
            .map_err(|_| FieldError::new("file_id", "not a file id (64 hex digits)"))?;
        let (name, path) = files::checked_name(&file.name, file.path.as_deref())?;
        checked.push((id, name, path));
    }
    let blobs = state.files().blobs().clone();
    let described = tokio::task::spawn_blocking(move || {
        checked
            .into_iter()
            .map(|(id, name, path)| {
                let complete = blobs.status(id)?.state == storage::BlobState::Complete;
                let manifest = match blobs.manifest(id)? {
                    Some(m) if complete => m,
                    _ => {
                        return Err(UploadError::Name {
                            field: "file_id",
                            reason: format!(
                                "no stored file {id}: store it with POST /api/v1/files"
                            ),
                        })
                    }
                };
                files::describe(&blobs, id, &manifest, name, path)
            })
            .collect::<Result<Vec<_>, UploadError>>()
    })
    .await
    .map_err(|e| UploadError::Task(e.to_string()))??;
    FileContent { files: described }
        .to_text()
        .map_err(|e| FieldError::new("files", e.to_string()).into())
}

/// `GET /api/v1/files/{file_id}` → the content, once complete and verified (`409`
/// before). Served as a download, never as a page of the API's origin: whatever the
/// sender called it, HTML or script cannot run here.
pub async fn content(
    State(state): State<ApiState>,
    Segments(file_id): Segments<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let service = state.files();
    let attachment = service.attachment(&file_id).await?;
    let Some(file) = service.open(&file_id)? else {
        return Err(FileError::NotComplete.into());
    };
    let inline = params.flag("inline")?;
    let name = attachment.name;
    // Images may show inline (the viewer); everything else is bytes to save.
    let mime = if inline && is_inline_image(&attachment.mime) {
        attachment.mime
    } else {
        "application/octet-stream".to_string()
    };
    let disposition = format!(
        "{}; filename=\"{}\"; filename*=UTF-8''{}",
        if inline { "inline" } else { "attachment" },
        ascii_fallback(&name),
        percent_encode(&name)
    );
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(
        tokio::fs::File::from_std(file),
    ));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    let value = |s: &str| HeaderValue::from_str(s).map_err(|e| ApiError::internal(e.to_string()));
    headers.insert(header::CONTENT_TYPE, value(&mime)?);
    headers.insert(header::CONTENT_LENGTH, value(&attachment.size.to_string())?);
    headers.insert(header::CONTENT_DISPOSITION, value(&disposition)?);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    Ok(response)
}

fn is_inline_image(mime: &str) -> bool {
    matches!(
        mime,
        "image/png" | "image/jpeg" | "image/gif" | "image/webp" | "image/bmp"
    )
}

fn ascii_fallback(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// RFC 8187 `attr-char` kept, everything else `%XX`.
fn percent_encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `GET /api/v1/files/{file_id}/status`.
pub async fn status(
    State(state): State<ApiState>,
    Segments(file_id): Segments<String>,
) -> Result<Json<FileStatusView>, ApiError> {
    Ok(Json(state.files().status(&file_id).await?))
}

/// `POST /api/v1/files/{file_id}/fetch` → `202`: downloads it (again, after a
/// failure or a cancel), from the verified chunks already here.
pub async fn fetch(
    State(state): State<ApiState>,
    Segments(file_id): Segments<String>,
) -> Result<(StatusCode, Json<FileStatusView>), ApiError> {
    let files = state.files();
    files.fetch(&file_id).await?;
    Ok((StatusCode::ACCEPTED, Json(files.status(&file_id).await?)))
}

/// `POST /api/v1/files/{file_id}/cancel` → `200` and the status: stops the download
/// (what is verified stays for a later fetch).
pub async fn cancel(
    State(state): State<ApiState>,
    Segments(file_id): Segments<String>,
) -> Result<Json<FileStatusView>, ApiError> {
    let files = state.files();
    files.cancel(&file_id).await?;
    Ok(Json(files.status(&file_id).await?))
}

/// `POST /api/v1/files/{file_id}/withdraw` → `200` and the status: the sender's
/// "stop sending" — this node serves it to nobody, across restarts, until `…/offer`.
pub async fn withdraw(
    State(state): State<ApiState>,
    Segments(file_id): Segments<String>,
) -> Result<Json<FileStatusView>, ApiError> {
    let files = state.files();
    files.withdraw(&file_id).await?;
    Ok(Json(files.status(&file_id).await?))
}

/// `POST /api/v1/files/{file_id}/offer` → `200` and the status: serves it again after
/// `…/withdraw`.
pub async fn offer(
    State(state): State<ApiState>,
    Segments(file_id): Segments<String>,
) -> Result<Json<FileStatusView>, ApiError> {
    let files = state.files();
    files.offer(&file_id).await?;
    Ok(Json(files.status(&file_id).await?))
}

/// Where an exported file is: `{"path": …}`.
#[derive(Debug, serde::Serialize)]
pub struct ExportedPath {
    path: String,
}

impl ExportedPath {
    fn of(path: &std::path::Path) -> Json<ExportedPath> {
        Json(ExportedPath {
            path: path.to_string_lossy().into_owned(),
        })
    }
}

/// `POST /api/v1/files/{file_id}/open` → `200 {"path"}`: the complete file put into
/// the folder for received files (an identical earlier copy used again) and opened
/// with the desktop's default application (started, not waited for).
pub async fn open(
    State(state): State<ApiState>,
    Segments(file_id): Segments<String>,
) -> Result<Json<ExportedPath>, ApiError> {
    let path = state.files().open_file(&file_id).await?;
    Ok(ExportedPath::of(&path))
}

/// `POST /api/v1/files/{file_id}/reveal` → `200 {"path"}`: like `…/open`, but shows
/// the file selected in its folder.
pub async fn reveal(
    State(state): State<ApiState>,
    Segments(file_id): Segments<String>,
) -> Result<Json<ExportedPath>, ApiError> {
    let path = state.files().reveal_file(&file_id).await?;
    Ok(ExportedPath::of(&path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_disposition_names_are_safe_and_exact() {
        assert_eq!(percent_encode("报告 1.pdf"), "%E6%8A%A5%E5%91%8A%201.pdf");
        assert_eq!(ascii_fallback("a\"b\\c 报.txt"), "a_b_c _.txt");
    }
}
