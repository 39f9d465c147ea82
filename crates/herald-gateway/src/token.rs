//! Resume tokens: the next offset of every partition of a stream's topic, as
//! `<partition>:<offset>` pairs joined by commas (`0:12,1:40,2:7`). An SSE event's `id:`
//! holds one, so `Last-Event-ID` resumes exactly after that event.

use std::collections::BTreeMap;

/// Longest token accepted (a topic of thousands of partitions fits).
const TOKEN_CHARS_MAX: usize = 64 * 1024;

/// Next offset per partition.
pub(crate) type Positions = BTreeMap<i32, i64>;

/// Formats `positions` as a token.
pub(crate) fn format(positions: &Positions) -> String {
    let mut token = String::with_capacity(positions.len() * 8);
    for (partition, offset) in positions {
        if !token.is_empty() {
            token.push(',');
        }
        token.push_str(&partition.to_string());
        token.push(':');
        token.push_str(&offset.to_string());
    }
    token
}

/// Whether `text` has a token's characters (digits, `:` and `,`) and at least one `:`.
pub(crate) fn looks_like(text: &str) -> bool {
    text.contains(':') && text.bytes().all(|b| b.is_ascii_digit() || b == b':' || b == b',')
}

/// Parses a token of a topic with `partitions` partitions.
pub(crate) fn parse(text: &str, partitions: u32) -> Result<Positions, String> {
    if text.len() > TOKEN_CHARS_MAX {
        return Err(format!("a resume token is at most {TOKEN_CHARS_MAX} characters"));
    }
    let mut positions = Positions::new();
    for pair in text.split(',').filter(|p| !p.is_empty()) {
        let (partition, offset) =
            pair.split_once(':').ok_or_else(|| format!("{pair:?} is not <partition>:<offset>"))?;
        let partition: i32 = partition.parse().map_err(|_| format!("{partition:?} is not a partition"))?;
        let offset: i64 = offset.parse().map_err(|_| format!("{offset:?} is not an offset"))?;
        if partition < 0 || partition as u32 >= partitions || offset < 0 {
            return Err(format!("{pair:?} names no position of this topic ({partitions} partitions)"));
        }
        positions.insert(partition, offset);
    }
    Ok(positions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_bad_ones_are_refused() {
        let positions: Positions = [(0, 12), (1, 40), (2, 0)].into_iter().collect();
        let token = format(&positions);
        assert_eq!(token, "0:12,1:40,2:0");
        assert!(looks_like(&token));
        assert_eq!(parse(&token, 3).expect("parses"), positions);
        assert!(parse("0:12,3:1", 3).is_err(), "partition 3 of 3");
        assert!(parse("0:-1", 3).is_err());
        assert!(parse("0;1", 3).is_err());
        assert!(!looks_like("2026-11-30T10:00:00Z"));
        assert!(!looks_like("1764496800000"));
    }
}
