//! The gate in front of every route.
//!
//! - `Host` must name this server (127.0.0.1:PORT or localhost:PORT): a DNS-rebinding
//!   page reaches us under a foreign host name and is refused.
//! - `Origin`, when a browser sends one, must be this server's own: other local web
//!   pages cannot drive the API.
//! - `/api/` needs `Authorization: Bearer <token>`: other local users cannot.
//!
//! The UI's static files need no token (they hold no data) but pass the first two checks.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::{ApiError, ApiState};

pub async fn guard(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let own = OwnNames::new(state.inner.parts.local_addr);
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    if !host.is_some_and(|h| own.is_host(h)) {
        return ApiError::forbidden("forbidden_host", "Host header does not name this node")
            .into_response();
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        if !origin.to_str().is_ok_and(|o| own.is_origin(o)) {
            return ApiError::forbidden(
                "forbidden_origin",
                "requests from other origins are refused",
            )
            .into_response();
        }
    }
    if req.uri().path().starts_with("/api") && !bearer_ok(req.headers(), &state.inner.parts.token) {
        return ApiError::unauthorized().into_response();
    }
    next.run(req).await
}

/// The token comes as `Authorization: Bearer <token>`, or — for WebSockets, where
/// browsers cannot set headers — as the subprotocol `lanchat.bearer.<token>`.
fn bearer_ok(headers: &HeaderMap, token: &str) -> bool {
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let from_subprotocol = || {
        headers
            .get(header::SEC_WEBSOCKET_PROTOCOL)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.split(',')
                    .find_map(|p| p.trim().strip_prefix("lanchat.bearer."))
            })
    };
    from_header
        .or_else(from_subprotocol)
        .is_some_and(|given| bool::from(given.as_bytes().ct_eq(token.as_bytes())))
}

/// The names under which this server may legitimately be addressed.
struct OwnNames {
    hosts: [String; 2],
}

impl OwnNames {
    fn new(addr: std::net::SocketAddr) -> Self {
        OwnNames {
            hosts: [addr.to_string(), format!("localhost:{}", addr.port())],
        }
    }

    fn is_host(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    fn is_origin(&self, origin: &str) -> bool {
        origin
            .strip_prefix("http://")
            .is_some_and(|host| self.is_host(host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_names() {
        let own = OwnNames::new("127.0.0.1:4242".parse().unwrap());
        assert!(own.is_host("127.0.0.1:4242"));
        assert!(own.is_host("LOCALHOST:4242"));
        assert!(!own.is_host("127.0.0.1:4243"));
        assert!(!own.is_host("evil.example:4242"));
        assert!(!own.is_host("127.0.0.1"));
        assert!(own.is_origin("http://127.0.0.1:4242"));
        assert!(!own.is_origin("https://127.0.0.1:4242"));
        assert!(!own.is_origin("null"));
        let v6 = OwnNames::new("[::1]:80".parse().unwrap());
        assert!(v6.is_host("[::1]:80"));
    }

    #[test]
    fn bearer_tokens() {
        let mut h = HeaderMap::new();
        assert!(!bearer_ok(&h, "abc"));
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert!(bearer_ok(&h, "abc"));
        h.insert(header::AUTHORIZATION, "Bearer abd".parse().unwrap());
        assert!(!bearer_ok(&h, "abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert!(!bearer_ok(&h, "abc"));
        let mut ws = HeaderMap::new();
        ws.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            "lanchat.v1, lanchat.bearer.abc".parse().unwrap(),
        );
        assert!(bearer_ok(&ws, "abc"));
        ws.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            "lanchat.v1, lanchat.bearer.abd".parse().unwrap(),
        );
        assert!(!bearer_ok(&ws, "abc"));
    }
}
