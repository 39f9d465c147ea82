//! A safe filter over a record's JSON value: conditions like `data.total > 100` or
//! `data.customer.id = "c-7"`, joined by `and`. It is parsed into data and compared;
//! nothing a user types is ever run as code.

use serde_json::Value;

/// Longest filter accepted.
const FILTER_CHARS_MAX: usize = 1_000;
/// Most conditions in one filter.
const CONDITIONS_MAX: usize = 8;

/// How a field is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// The field's text contains the value's.
    Contains,
}

/// Operators, longest first so `<=` is not read as `<`.
const OPS: [(&str, Op); 7] =
    [("!=", Op::Ne), ("<=", Op::Le), (">=", Op::Ge), ("=", Op::Eq), ("<", Op::Lt), (">", Op::Gt), ("~", Op::Contains)];

/// One `path op value`.
#[derive(Debug, Clone, PartialEq)]
struct Condition {
    path: Vec<String>,
    op: Op,
    value: Value,
}

/// Conditions that must all hold.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct FieldFilter(Vec<Condition>);

impl FieldFilter {
    /// Parses `text`; an empty text admits everything.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        if text.len() > FILTER_CHARS_MAX {
            return Err(format!("a filter is at most {FILTER_CHARS_MAX} characters"));
        }
        let parts: Vec<&str> = text.split(" and ").map(str::trim).filter(|p| !p.is_empty()).collect();
        if parts.len() > CONDITIONS_MAX {
            return Err(format!("a filter has at most {CONDITIONS_MAX} conditions"));
        }
        parts.into_iter().map(condition).collect::<Result<_, _>>().map(Self)
    }

    /// Whether `value` meets every condition.
    pub(crate) fn admits(&self, value: &Value) -> bool {
        self.0.iter().all(|c| field(value, &c.path).is_some_and(|found| compare(found, c.op, &c.value)))
    }

    /// Whether it has no conditions.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn condition(text: &str) -> Result<Condition, String> {
    let is_path = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '$');
    let at = text
        .find(|c: char| !is_path(c))
        .ok_or_else(|| format!("{text:?}: write field op value, e.g. data.total > 100"))?;
    let (path, rest) = text.split_at(at);
    let rest = rest.trim_start();
    let (symbol, op) = OPS
        .iter()
        .find(|(symbol, _)| rest.starts_with(symbol))
        .ok_or_else(|| format!("{text:?}: the operator is one of = != < <= > >= ~"))?;
    if path.is_empty() || path.split('.').any(str::is_empty) {
        return Err(format!("{text:?}: a field is names joined by dots, e.g. data.customer.id"));
    }
    let raw = rest[symbol.len()..].trim();
    let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
    Ok(Condition { path: path.split('.').map(str::to_string).collect(), op: *op, value })
}

/// The value at `path` (object keys, or array indexes).
fn field<'a>(mut value: &'a Value, path: &[String]) -> Option<&'a Value> {
    for name in path {
        value = match value {
            Value::Object(fields) => fields.get(name)?,
            Value::Array(items) => items.get(name.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

fn compare(found: &Value, op: Op, wanted: &Value) -> bool {
    use std::cmp::Ordering;
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let order = match (found.as_f64(), wanted.as_f64()) {
        (Some(a), Some(b)) => a.partial_cmp(&b),
        _ => Some(text(found).cmp(&text(wanted))),
    };
    match op {
        Op::Eq => order == Some(Ordering::Equal),
        Op::Ne => order != Some(Ordering::Equal),
        Op::Lt => order == Some(Ordering::Less),
        Op::Le => matches!(order, Some(Ordering::Less | Ordering::Equal)),
        Op::Gt => order == Some(Ordering::Greater),
        Op::Ge => matches!(order, Some(Ordering::Greater | Ordering::Equal)),
        Op::Contains => text(found).contains(&text(wanted)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn admits(filter: &str, value: &Value) -> bool {
        FieldFilter::parse(filter).expect("parses").admits(value)
    }

    #[test]
    fn conditions_compare_numbers_text_and_nested_fields() {
        let event = json!({ "type": "order.placed", "data": { "total": 120.5, "customer": { "id": "c-7" }, "items": [{ "sku": "A1" }] } });
        assert!(admits("data.total > 100", &event));
        assert!(!admits("data.total > 200", &event));
        assert!(admits("data.total >= 120.5 and type = order.placed", &event));
        assert!(admits(r#"data.customer.id = "c-7""#, &event));
        assert!(admits("data.customer.id != c-8", &event));
        assert!(admits("data.items.0.sku = A1", &event));
        assert!(admits("type ~ placed", &event));
        assert!(!admits("data.missing = 1", &event), "a missing field meets no condition");
        assert!(admits("", &event));
    }

    #[test]
    fn bad_filters_are_refused_with_a_reason() {
        assert!(FieldFilter::parse("data.total").is_err_and(|e| e.contains("field op value")));
        assert!(FieldFilter::parse("data..x = 1").is_err());
        assert!(FieldFilter::parse("data.x ! 1").is_err_and(|e| e.contains("operator")));
        assert!(FieldFilter::parse(&"a = 1 and ".repeat(9)).is_err());
        assert!(FieldFilter::parse(&"x".repeat(2_000)).is_err());
    }
}
