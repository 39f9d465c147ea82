//! Login when the gateway has tokens: a session opens for the token, and its random id
//! goes into an `HttpOnly`, `SameSite=Strict` cookie that pages and the live tail's stream
//! carry (the token itself never leaves the form).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::layout::page;
use crate::auth::{self, SESSION_COOKIE};
use crate::problem::Query;
use crate::server::App;

/// Where to go after logging in.
#[derive(Debug, Deserialize)]
pub(crate) struct Next {
    next: Option<String>,
}

/// A path on this site (never another site's URL: browsers drop tabs and newlines from
/// URLs and read `\\` as `/`, so none of those may appear).
fn local(next: Option<&str>) -> &str {
    let plain = |path: &str| path.chars().all(|c| c.is_ascii_graphic()) && !path.contains('\\');
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && plain(path) => path,
        _ => "/",
    }
}

pub(crate) async fn form(State(app): State<Arc<App>>, Query(next): Query<Next>) -> Response {
    let body = html! {
        h1 { "Log in" }
        @if app.config.tokens.is_none() {
            p { "This gateway has no tokens: the console is open. " a href="/" { "Go to the overview" } }
        } @else {
            form.box method="post" action="/login" {
                input type="hidden" name="next" value=(local(next.next.as_deref()));
                label { "Token " input type="password" name="token" autocomplete="current-password" required autofocus; }
                button type="submit" { "Log in" }
            }
        }
    };
    page("Log in", "", body).into_response()
}

/// The login form's fields.
#[derive(Debug, Deserialize)]
pub(crate) struct Login {
    token: String,
    next: Option<String>,
}

pub(crate) async fn submit(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    axum::Form(login): axum::Form<Login>,
) -> Response {
    if !auth::same_origin(&headers) {
        return (StatusCode::FORBIDDEN, "a login must come from this console's own page").into_response();
    }
    let Some(tokens) = app.config.tokens.as_ref() else { return Redirect::to("/").into_response() };
    let token = login.token.trim();
    let valid = !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()) && auth::known(tokens, token);
    if !valid {
        let body = html! {
            h1 { "Log in" }
            p.problem role="alert" { "That token is not known." }
            p { a href="/login" { "Try again" } }
        };
        return (StatusCode::UNAUTHORIZED, page("Log in", "", body)).into_response();
    }
    let session = app.sessions.open(token, Instant::now());
    let cookie = format!("{SESSION_COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/");
    let mut response = Redirect::to(local(login.next.as_deref())).into_response();
    if let Ok(value) = cookie.parse() {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

pub(crate) async fn logout(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if !auth::same_origin(&headers) {
        return (StatusCode::FORBIDDEN, "a logout must come from this console's own page").into_response();
    }
    if let Some(session) = auth::cookie(&headers, SESSION_COOKIE) {
        app.sessions.close(&session);
    }
    let mut response = Redirect::to("/login").into_response();
    let cookie = format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    if let Ok(value) = cookie.parse() {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_login_only_local_paths_are_followed() {
        assert_eq!(local(Some("/topics/a?x=1")), "/topics/a?x=1");
        assert_eq!(local(Some("//evil.example/")), "/");
        assert_eq!(local(Some("https://evil.example/")), "/");
        assert_eq!(local(Some("/\\evil.example")), "/");
        assert_eq!(local(Some("/\t/evil.example")), "/");
        assert_eq!(local(Some("/\n/evil.example")), "/");
        assert_eq!(local(None), "/");
    }
}
