//! The UI's files, embedded in the binary from ui/dist at build time.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
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

pub async fn serve(method: Method, uri: Uri, request_headers: HeaderMap) -> Response {
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
    // build-ui.sh stores a gzip copy beside the larger files.
    let compressed = UiFiles::get(&format!("{name}.gz"));
    let has_variants = compressed.is_some();
    let (data, gzip) = match compressed {
        Some(gz) if accepts_gzip(&request_headers) => (gz.data, true),
        _ => (file.data, false),
    };
    let mut resp = (StatusCode::OK, Body::from(data)).into_response();
    for (k, v) in page_headers(mime.as_ref()) {
        if let Some(k) = k {
            resp.headers_mut().insert(k, v);
        }
    }
    if gzip {
        resp.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if has_variants {
        resp.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    resp
}

/// `Accept-Encoding` names gzip (or `*`) without refusing it (`;q=0`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(header::ACCEPT_ENCODING, v);
        }
        h
    }

    #[test]
    fn gzip_is_sent_only_to_clients_that_take_it() {
        assert!(accepts_gzip(&with("gzip, deflate, br")));
        assert!(accepts_gzip(&with("br;q=1.0, GZIP;q=0.5")));
        assert!(accepts_gzip(&with("*")));
        assert!(!accepts_gzip(&with("br, deflate")));
        assert!(!accepts_gzip(&with("gzip;q=0")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
