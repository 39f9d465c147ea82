//! Wall-clock time for the framework and its tools (`now_ms`, RFC 3339 both ways), from
//! `herald-common`, which the gateway shares.

pub use herald_common::time::{now_ms, parse_rfc3339_ms, rfc3339_from_millis, rfc3339_now};
