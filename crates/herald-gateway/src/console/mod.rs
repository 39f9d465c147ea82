//! The web console: HTML pages rendered on the server (maud) from the same data the REST
//! API serves, plain forms for every action (each one previewed before it changes
//! anything), and one small script for the live tail. Nothing is built with a JavaScript
//! toolchain: the stylesheet and script are compiled into the binary.
//!
//! Without tokens the console is open (the gateway then only listens on loopback and
//! answers loopback names); with tokens, a login opens a session whose random id goes in
//! an `HttpOnly`, `SameSite=Strict` cookie. Every form post must come from the console's
//! own origin, and no page may be framed, so another site's page cannot drive it.

mod assets;
pub(crate) mod dead_letters;
mod diff;
mod field_filter;
mod groups;
pub(crate) mod history;
mod layout;
mod login;
mod messages;
mod overview;
mod schemas;
mod topics;
pub mod workflows;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::auth::{self, Scope};
use crate::problem::Problem;
use crate::server::App;

/// The console's routes.
pub(crate) fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(overview::show))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/console/assets/{file}", get(assets::serve))
        .route("/topics", get(topics::list).post(topics::create))
        .route("/topics/{topic}", get(topics::detail))
        .route("/topics/{topic}/settings", post(topics::settings))
        .route("/topics/{topic}/delete", post(topics::delete))
        .route("/topics/{topic}/messages", get(messages::browse))
        .route("/topics/{topic}/tail", get(messages::tail))
        .route("/flows/{correlation}", get(messages::flow))
        .route("/groups", get(groups::list))
        .route("/groups/{group}", get(groups::detail))
        .route("/groups/{group}/reset", post(groups::reset))
        .route("/groups/{group}/reset/apply", post(groups::apply))
        .route("/dead-letters", get(dead_letters::overview))
        .route("/dead-letters/{topic}", get(dead_letters::letters))
        .route("/dead-letters/{topic}/{partition}/{offset}", get(dead_letters::letter))
        .route("/dead-letters/{topic}/redrive", post(dead_letters::redrive))
        .route("/schemas", get(schemas::subjects))
        .route("/schemas/{subject}", get(schemas::subject))
        .route("/sagas", get(workflows::sagas))
        .route("/sagas/{saga}/{id}", get(workflows::saga))
        .route("/projections", get(workflows::projections))
        .route("/projections/{name}/{version}/rebuild", post(workflows::rebuild))
        .layer(axum::middleware::map_response(guard_page))
}

/// What every console response may do in a browser: its own scripts and styles only, and
/// never inside another site's frame.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

async fn guard_page(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    response
}

/// A console page's failure, shown as a page.
#[derive(Debug)]
pub(crate) struct Failed(Problem);

impl From<Problem> for Failed {
    fn from(problem: Problem) -> Self {
        Self(problem)
    }
}

impl IntoResponse for Failed {
    fn into_response(self) -> Response {
        let Problem { status, detail, .. } = self.0;
        let body = maud::html! {
            h1 { (status.canonical_reason().unwrap_or("Error")) }
            p.problem role="alert" { (detail) }
            p { a href="/" { "Overview" } }
        };
        (status, layout::page(status.as_str(), "", body)).into_response()
    }
}

/// What a console handler returns.
pub(crate) type Answer = Result<Response, Failed>;

/// A request the token (if tokens are set) allows at `SCOPE` (0 read, 1 write, 2 admin).
/// Without a usable token a page redirects to the login form. A form post must also come
/// from the console's own origin.
#[derive(Debug)]
pub(crate) struct Viewer<const SCOPE: u8>;

/// May read.
pub(crate) type Reader = Viewer<0>;
/// May change things.
pub(crate) type Operator = Viewer<2>;

impl<const SCOPE: u8> FromRequestParts<Arc<App>> for Viewer<SCOPE> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Response> {
        if parts.method != Method::GET && parts.method != Method::HEAD && !auth::same_origin(&parts.headers) {
            let refused = Problem::new(StatusCode::FORBIDDEN, "a form post must come from this console's own pages");
            return Err(Failed(refused).into_response());
        }
        let need = if SCOPE == 0 { Scope::Read } else { Scope::Admin };
        match auth::authorize(app.config.tokens.as_ref(), Some(&app.sessions), &parts.headers, None, need) {
            Ok(()) => Ok(Self),
            Err(problem) if problem.status == StatusCode::UNAUTHORIZED => {
                let next = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                Err(Redirect::to(&format!("/login?next={}", layout::encode(next))).into_response())
            }
            Err(problem) => Err(Failed(problem).into_response()),
        }
    }
}
