//! The seeds' naming rules, as `const fn`s so the `event!` macro checks them at compile time.
//!
//! An event type is `{domain}.{action}` (at least two dot-separated segments); a topic is
//! `{domain}.{action}` or `{domain}.{entity}.{action}`, and a dead-letter topic adds `.dlq`.
//! Segments are lowercase ASCII letters, digits, `_` and `-`, starting with a letter.

/// True for a valid event type such as `user.created`.
pub const fn is_valid_event_type(name: &str) -> bool {
    segments_ok(name.as_bytes(), 2)
}

/// True for a valid topic name such as `user.created` or `orders.payment.failed.dlq`.
pub const fn is_valid_topic(name: &str) -> bool {
    name.len() <= 249 && segments_ok(name.as_bytes(), 2)
}

const fn segments_ok(bytes: &[u8], min_segments: usize) -> bool {
    if bytes.is_empty() {
        return false;
    }
    let mut segments = 1;
    let mut at_segment_start = true;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'.' {
            if at_segment_start {
                return false; // empty segment
            }
            segments += 1;
            at_segment_start = true;
        } else {
            let ok = if at_segment_start {
                b.is_ascii_lowercase()
            } else {
                b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
            };
            if !ok {
                return false;
            }
            at_segment_start = false;
        }
        i += 1;
    }
    !at_segment_start && segments >= min_segments
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_and_topics_follow_the_seeds() {
        for good in ["user.created", "order.payment-failed", "billing.invoice_sent.v2x", "a.b"] {
            assert!(is_valid_event_type(good), "{good}");
            assert!(is_valid_topic(good), "{good}");
        }
        assert!(is_valid_topic("user.created.dlq"));
        for bad in
            ["", "user", "User.created", "user..created", ".user", "user.", "user.created!", "1user.x", "user.Created"]
        {
            assert!(!is_valid_event_type(bad), "{bad}");
            assert!(!is_valid_topic(bad), "{bad}");
        }
    }
}
