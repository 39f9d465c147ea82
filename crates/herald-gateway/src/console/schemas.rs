//! `/schemas`: subjects with their latest version and compatibility level;
//! `/schemas/{s}`: its versions, one shown, and a diff between two.

use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use herald_registry::Which;
use maud::{Markup, html};
use serde::Deserialize;

use super::diff::{self, Line};
use super::layout::{encode, page};
use super::{Answer, Reader};
use crate::problem::{Path, Problem, Query};
use crate::server::{App, blocking};

fn absent() -> Markup {
    html! {
        h1 { "Schemas" }
        p.muted { "The schema registry is off (" code { "--schema-registry-listen off" } ")." }
    }
}

/// A schema's text indented for reading (JSON schemas, Avro), or as stored.
fn readable(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text).map_or_else(|_| text.to_string(), |v| super::layout::pretty(&v))
}

fn failed(error: herald_registry::RegistryError) -> Problem {
    Problem::not_found(error.to_string())
}

pub(crate) async fn subjects(_: Reader, State(app): State<Arc<App>>) -> Answer {
    let Some(registry) = app.registry.clone() else { return Ok(page("Schemas", "/schemas", absent()).into_response()) };
    let rows = blocking(move || {
        let global = registry.level(None, true).map_err(failed)?;
        let rows = registry
            .subjects(false)
            .into_iter()
            .filter_map(|subject| {
                let latest = registry.version(&subject, Which::Latest, false).ok()?;
                let level = registry.level(Some(&subject), true).ok()?;
                Some((subject, latest.version, latest.id, latest.schema.kind.to_string(), level.name()))
            })
            .collect::<Vec<_>>();
        Ok((global.name(), rows))
    })
    .await?;
    let (global, rows) = rows;
    let body = html! {
        h1 { "Schemas" }
        p { "Global compatibility level: " strong { (global) } }
        @if rows.is_empty() { p.muted { "No subjects yet." } }
        @else { table #subjects {
            thead { tr { th { "Subject" } th.n { "Latest version" } th.n { "Id" } th { "Type" } th { "Compatibility" } } }
            tbody { @for (subject, version, id, kind, level) in &rows {
                tr { td { a href={ "/schemas/" (encode(subject)) } { (subject) } } td.n { (version) } td.n { (id) } td { (kind) } td { (level) } }
            } }
        } }
    };
    Ok(page("Schemas", "/schemas", body).into_response())
}

/// Which versions to show and compare.
#[derive(Debug, Deserialize)]
pub(crate) struct Pick {
    version: Option<i32>,
    old: Option<i32>,
    new: Option<i32>,
}

pub(crate) async fn subject(
    _: Reader,
    State(app): State<Arc<App>>,
    Path(subject): Path<String>,
    Query(pick): Query<Pick>,
) -> Answer {
    let Some(registry) = app.registry.clone() else { return Ok(page("Schemas", "/schemas", absent()).into_response()) };
    let name = subject.clone();
    let (versions, level, texts) = blocking(move || {
        let versions = registry.versions(&name, false).map_err(failed)?;
        let level = registry.level(Some(&name), true).map_err(failed)?.name();
        let text = |n: Option<i32>| -> Result<Option<(i32, String)>, Problem> {
            let which = n.map_or(Which::Latest, Which::Number);
            let found = registry.version(&name, which, false).map_err(failed)?;
            Ok(Some((found.version, readable(&found.schema.schema))))
        };
        let shown = text(pick.version)?;
        let compared = match (pick.old, pick.new) {
            (Some(old), Some(new)) => Some((text(Some(old))?, text(Some(new))?)),
            _ => None,
        };
        Ok((versions, level, (shown, compared)))
    })
    .await?;
    let (shown, compared) = texts;
    let s = encode(&subject);
    let (first, last) = (versions.first().copied().unwrap_or(1), versions.last().copied().unwrap_or(1));
    let body = html! {
        h1 { "Subject " (subject) }
        p { "Compatibility level: " strong #level { (level) } }
        h2 { "Versions" }
        p { @for v in &versions { a href={ "/schemas/" (s) "?version=" (v) } { "v" (v) } " " } }
        @if let Some((version, text)) = &shown { h2 { "Version " (version) } pre #schema { (text) } }
        h2 { "Compare" }
        form.box method="get" action={ "/schemas/" (s) } {
            label { "Old " select name="old" { @for v in &versions { option value=(v) selected[Some(*v) == pick.old.or(Some(first))] { "v" (v) } } } }
            label { "New " select name="new" { @for v in &versions { option value=(v) selected[Some(*v) == pick.new.or(Some(last))] { "v" (v) } } } }
            button type="submit" { "Show the difference" }
        }
        @if let Some((Some((a, old)), Some((b, new)))) = &compared { (diff_of(*a, old, *b, new)) }
    };
    Ok(page(&format!("Subject {subject}"), "/schemas", body).into_response())
}

fn diff_of(a: i32, old: &str, b: i32, new: &str) -> Markup {
    html! {
        h3 { "v" (a) " → v" (b) }
        @match diff::lines(old, new) {
            None => p.muted { "Too long to compare here (over " (diff::LINES_MAX) " lines)." },
            Some(lines) => pre.diff #diff { @for line in &lines { @match line {
                Line::Same(text) => span { "  " (text) },
                Line::Removed(text) => span.del { "- " (text) },
                Line::Added(text) => span.add { "+ " (text) },
            } } },
        }
    }
}
