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

/// The cookie the console's login sets (`HttpOnly`, `SameSite=Strict`: other sites' pages
/// never send it).
pub(crate) const TOKEN_COOKIE: &str = "herald_token";

/// The token a request carries: `Authorization: Bearer <token>`, `access_token=` in
/// the query (an `EventSource` cannot set headers), or the console's cookie.
fn presented(headers: &HeaderMap, query: Option<&str>) -> Result<Option<String>, Problem> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let text = value.to_str().unwrap_or_default();
        return match text.strip_prefix("Bearer ") {
            Some(token) if !token.trim().is_empty() && !token.contains(' ') => Ok(Some(token.trim().to_string())),
            _ => Err(Problem::new(StatusCode::UNAUTHORIZED, "the Authorization header must be `Bearer <token>`")),
        };
    }
    let from_query =
        query.unwrap_or_default().split('&').find_map(|pair| pair.strip_prefix("access_token=")).map(str::to_string);
    Ok(from_query.or_else(|| cookie(headers, TOKEN_COOKIE)))
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

/// Checks that the request's token has `need`.
pub(crate) fn authorize(
    tokens: Option<&Tokens>,
    headers: &HeaderMap,
    query: Option<&str>,
    need: Scope,
) -> Result<(), Problem> {
    let Some(tokens) = tokens else { return Ok(()) };
    let Some(token) = presented(headers, query)? else {
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
        authorize(app.config.tokens.as_ref(), &parts.headers, parts.uri.query(), need).map(|()| Self)
    }
}

/// Middleware: answers CORS preflights and marks responses to allowed origins.
pub(crate) async fn cors(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
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
