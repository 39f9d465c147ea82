//! Bearer tokens with read, write and admin scopes, and the CORS allow-list.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::GatewayError;
use crate::problem::Problem;
use crate::server::App;
use crate::session::Sessions;

/// What a token may do; each scope includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Read topics, messages, groups, streams and metrics.
    Read,
    /// Also produce.
    Write,
    /// Also create, alter and delete topics, reset and delete groups.
    Admin,
}

/// Tokens and their scopes, from a file of `<scope> <token>` lines (`#` comments).
#[derive(Clone, PartialEq, Eq)]
pub struct Tokens(HashMap<String, Scope>);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} tokens)", self.0.len())
    }
}

/// Tokens shorter than this are refused: they can be guessed.
const TOKEN_CHARS_MIN: usize = 16;

impl Tokens {
    /// Reads a token file.
    pub fn load(path: &std::path::Path) -> Result<Self, GatewayError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| GatewayError::TokenFile { path: path.to_path_buf(), source })?;
        Self::parse(&text).map_err(|reason| GatewayError::Tokens { path: path.to_path_buf(), reason })
    }

    /// Parses `<scope> <token>` lines.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut tokens = HashMap::new();
        for (n, line) in text.lines().enumerate().map(|(n, l)| (n + 1, l.trim())) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (scope, token) = line.split_once(char::is_whitespace).ok_or(format!("line {n}: <scope> <token>"))?;
            let scope = match scope {
                "read" => Scope::Read,
                "write" => Scope::Write,
                "admin" => Scope::Admin,
                other => return Err(format!("line {n}: scope {other:?} is not read, write or admin")),
            };
            let token = token.trim();
            if token.len() < TOKEN_CHARS_MIN || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!("line {n}: a token is {TOKEN_CHARS_MIN} or more visible ASCII characters"));
            }
            tokens.insert(token.to_string(), scope);
        }
        if tokens.is_empty() {
            return Err("no tokens".to_string());
        }
        Ok(Self(tokens))
    }

    fn scope_of(&self, token: &str) -> Option<Scope> {
        self.0.get(token).copied()
    }
}

/// The cookie the console's login sets: a session id (`HttpOnly`, `SameSite=Strict`).
pub(crate) const SESSION_COOKIE: &str = "herald_session";

/// The token a request carries: `Authorization: Bearer <token>`, `access_token=` in
/// the query (an `EventSource` cannot set headers), or, for a request from the console's
/// own pages (`same_origin`), the token of its login session.
fn presented(headers: &HeaderMap, query: Option<&str>, sessions: Option<&Sessions>) -> Result<Option<String>, Problem> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let text = value.to_str().unwrap_or_default();
        return match text.strip_prefix("Bearer ") {
            Some(token) if !token.trim().is_empty() && !token.contains(' ') => Ok(Some(token.trim().to_string())),
            _ => Err(Problem::new(StatusCode::UNAUTHORIZED, "the Authorization header must be `Bearer <token>`")),
        };
    }
    let from_query =
        query.unwrap_or_default().split('&').find_map(|pair| pair.strip_prefix("access_token=")).map(str::to_string);
    let from_session = || {
        let sessions = sessions.filter(|_| same_origin(headers))?;
        sessions.token(&cookie(headers, SESSION_COOKIE)?, std::time::Instant::now())
    };
    Ok(from_query.or_else(from_session))
}

/// Whether a request came from a page of this origin: its `Origin` names the `Host` it
/// was sent to, or (a browser that sends no `Origin`) `Sec-Fetch-Site` says so. A request
/// with neither header does not come from a browser page (curl, tests) and passes.
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    match (text(header::ORIGIN), text(header::HOST)) {
        (Some(origin), Some(host)) => {
            return origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) == Some(host);
        }
        (Some(_), None) => return false,
        _ => {}
    }
    matches!(text(header::HeaderName::from_static("sec-fetch-site")), None | Some("same-origin" | "none"))
}

/// Whether `host` (a `Host` header) names this machine's loopback: `localhost`,
/// `127.0.0.1` or `[::1]`, with any port. A page on another name that resolves to
/// 127.0.0.1 (DNS rebinding) is refused by a gateway without tokens.
pub(crate) fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().map(|ip| format!("[{ip}]")).unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default().to_string(),
    };
    let name = name.to_ascii_lowercase();
    name == "localhost" || name == "[::1]" || name.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// The value of cookie `name`, if the request carries it.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(name)?.strip_prefix('=').map(str::to_string))
        .filter(|value| !value.is_empty())
}

/// Whether `token` is one of `tokens` (any scope).
pub(crate) fn known(tokens: &Tokens, token: &str) -> bool {
    tokens.scope_of(token).is_some()
}

/// Checks that the request's token (or its console session's, when `sessions` is given)
/// has `need`.
pub(crate) fn authorize(
    tokens: Option<&Tokens>,
    sessions: Option<&Sessions>,
    headers: &HeaderMap,
    query: Option<&str>,
    need: Scope,
) -> Result<(), Problem> {
    let Some(tokens) = tokens else { return Ok(()) };
    let Some(token) = presented(headers, query, sessions)? else {
        return Err(Problem::new(StatusCode::UNAUTHORIZED, "a bearer token is required"));
    };
    match tokens.scope_of(&token) {
        None => Err(Problem::new(StatusCode::UNAUTHORIZED, "unknown token")),
        Some(scope) if scope < need => {
            Err(Problem::new(StatusCode::FORBIDDEN, format!("this token's scope is {scope:?}; {need:?} is needed")))
        }
        Some(_) => Ok(()),
    }
}

/// An extractor that admits a request whose token has scope `SCOPE` (0 read, 1 write,
/// 2 admin); put it first among a handler's arguments.
#[derive(Debug)]
pub(crate) struct Authorized<const SCOPE: u8>;

/// Read access.
pub(crate) type Read = Authorized<0>;
/// Write access.
pub(crate) type Write = Authorized<1>;
/// Admin access.
pub(crate) type Admin = Authorized<2>;

impl<const SCOPE: u8> FromRequestParts<Arc<App>> for Authorized<SCOPE> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Problem> {
        let need = match SCOPE {
            0 => Scope::Read,
            1 => Scope::Write,
            _ => Scope::Admin,
        };
        authorize(app.config.tokens.as_ref(), Some(&app.sessions), &parts.headers, parts.uri.query(), need)
            .map(|()| Self)
    }
}

/// Middleware: answers CORS preflights and marks responses to allowed origins. A gateway
/// without tokens on a loopback address also refuses requests naming another host
/// (DNS rebinding: another site's page whose name now resolves to 127.0.0.1).
pub(crate) async fn cors(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if app.config.tokens.is_none() && app.config.listen.ip().is_loopback() && !loopback_host(host) {
        let refused = "without tokens this gateway answers requests for localhost, 127.0.0.1 or [::1] only (a page \
                       on another name could be DNS rebinding); set --http-token-file to serve other names";
        return Problem::new(StatusCode::MISDIRECTED_REQUEST, refused).into_response();
    }
    let origin = request.headers().get(header::ORIGIN).cloned();
    let allowed = origin
        .as_ref()
        .and_then(|o| o.to_str().ok())
        .is_some_and(|o| app.config.cors_origins.iter().any(|allowed| allowed == o || allowed == "*"));
    let preflight =
        request.method() == Method::OPTIONS && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        if !allowed {
            return Problem::new(StatusCode::FORBIDDEN, "this origin is not allowed").into_response();
        }
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, PATCH, DELETE"));
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type, last-event-id"),
        );
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        mark(headers, origin);
        return response;
    }
    let mut response = next.run(request).await;
    if allowed {
        mark(response.headers_mut(), origin);
    }
    response
}

fn mark(headers: &mut HeaderMap, origin: Option<HeaderValue>) {
    if let Some(origin) = origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs.iter().map(|(n, v)| (header::HeaderName::from_static(n), v.parse().expect("value"))).collect()
    }

    #[test]
    fn requests_from_other_origins_are_told_apart() {
        assert!(same_origin(&headers(&[("origin", "http://127.0.0.1:8080"), ("host", "127.0.0.1:8080")])));
        assert!(!same_origin(&headers(&[("origin", "http://evil.example"), ("host", "127.0.0.1:8080")])));
        assert!(!same_origin(&headers(&[("origin", "http://127.0.0.1:3000"), ("host", "127.0.0.1:8080")])));
        assert!(!same_origin(&headers(&[("origin", "null"), ("host", "127.0.0.1:8080")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(same_origin(&headers(&[])), "curl sends neither header");
    }

    #[test]
    fn only_loopback_names_pass_without_tokens() {
        for host in ["localhost:8080", "127.0.0.1:8080", "127.0.0.1", "[::1]:8080", "LOCALHOST"] {
            assert!(loopback_host(host), "{host}");
        }
        for host in ["evil.example:8080", "localhost.evil.example", "10.0.0.1:8080", "", "[::2]:80"] {
            assert!(!loopback_host(host), "{host}");
        }
    }

    #[test]
    fn token_files_parse_and_refuse_what_they_should() {
        let tokens = Tokens::parse("# ops\nread rrrrrrrrrrrrrrrr\nadmin aaaaaaaaaaaaaaaa\n").expect("tokens");
        assert_eq!(tokens.scope_of("rrrrrrrrrrrrrrrr"), Some(Scope::Read));
        assert_eq!(tokens.scope_of("aaaaaaaaaaaaaaaa"), Some(Scope::Admin));
        assert!(Tokens::parse("root aaaaaaaaaaaaaaaa").is_err());
        assert!(Tokens::parse("read short").is_err());
        assert!(Tokens::parse("").is_err());
    }
}
