//! The console's stylesheet and script, compiled into the binary.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::problem::Path;

/// Where the stylesheet is served.
pub(crate) const CSS_PATH: &str = "/console/assets/console.css";
/// Where the script is served.
pub(crate) const JS_PATH: &str = "/console/assets/console.js";

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

pub(crate) async fn serve(Path(file): Path<String>) -> Response {
    let (kind, body) = match file.as_str() {
        "console.css" => ("text/css; charset=utf-8", CSS),
        "console.js" => ("text/javascript; charset=utf-8", JS),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}
