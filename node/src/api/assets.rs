//! The UI's files, embedded in the binary from ui/dist at build time.

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "../ui/dist"]
struct UiFiles;

/// The page may load only its own files and talk only to this node. Images may also be
/// `data:` (thumbnails in file messages) and `blob:` (a received image, fetched with the
/// token and shown through an object URL: an `<img>` cannot send the token).
const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
    style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

const NOT_BUILT: &str = "<!doctype html><meta charset=utf-8><title>lanchat</title>\
    <h1>lanchat</h1><p>The user interface was not built into this binary. \
    Run <code>scripts/build-ui.sh</code>, then rebuild lanchat.</p>";

pub async fn serve(method: Method, uri: Uri) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return super::ApiError::method_not_allowed().into_response();
    }
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    let (file, name) = match UiFiles::get(path) {
        Some(file) => (file, path),
        // Paths without an extension are the UI's own routes: give them the app.
        None if !path.contains('.') => match UiFiles::get("index.html") {
            Some(file) => (file, "index.html"),
            None => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    page_headers("text/html; charset=utf-8"),
                    NOT_BUILT,
                )
                    .into_response()
            }
        },
        None => return (StatusCode::NOT_FOUND, "not found").into_response(),
    };
    let mime = mime_guess::from_path(name).first_or_octet_stream();
    let mut resp = (StatusCode::OK, Body::from(file.data)).into_response();
    for (k, v) in page_headers(mime.as_ref()) {
        if let Some(k) = k {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

fn page_headers(content_type: &str) -> axum::http::HeaderMap {
    let mut h = axum::http::HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // Each build has new files under the same names; never serve stale ones.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h
}
