//! [`Cursor`]: a stream's place in a topic (the next offset of every partition) and its
//! filters; each read returns what is visible past the place, each event with the token
//! that resumes after it. Streams over SSE and the message pages both read through it.

use std::sync::Arc;

use herald_broker::internals::Broker;
use herald_log::LogError;

use crate::problem::Problem;
use crate::records::{self, Message};
use crate::token::{self, Positions};

/// Which records a stream shows (empty lists: all).
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    /// Record keys.
    pub(crate) keys: Vec<String>,
    /// `event-type` header values.
    pub(crate) types: Vec<String>,
    /// Partitions.
    pub(crate) partitions: Vec<i32>,
}

impl Filter {
    fn reads(&self, partition: i32) -> bool {
        self.partitions.is_empty() || self.partitions.contains(&partition)
    }

    fn admits(&self, message: &Message) -> bool {
        let key = || message.key.as_deref().is_some_and(|k| self.keys.iter().any(|want| want == k));
        let kind = || message.event_type().is_some_and(|t| self.types.iter().any(|want| want == t));
        (self.keys.is_empty() || key()) && (self.types.is_empty() || kind())
    }

    /// How many values the filter holds.
    pub(crate) fn len(&self) -> usize {
        self.keys.len() + self.types.len() + self.partitions.len()
    }
}

/// What a read found.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Item {
    /// A record, and the token after it.
    Event(Box<Message>, String),
    /// Records that retention removed before the stream reached them.
    Gap {
        /// The partition.
        partition: i32,
        /// The stream's position.
        from: i64,
        /// The log start it moved to.
        to: i64,
    },
}

/// What [`Cursor::take`] made of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Take {
    /// Send it.
    Deliver,
    /// Already had it, or filtered out.
    Skip,
    /// Records before it were missed: read the log.
    Behind,
}

/// A place in a topic plus filters.
#[derive(Debug, Clone)]
pub(crate) struct Cursor {
    topic: String,
    positions: Positions,
    filter: Filter,
}

/// Where a stream starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum From {
    /// Every partition's log start.
    Earliest,
    /// Every partition's end.
    Latest,
    /// A resume token (partitions it does not name start at their log start).
    Token(String),
    /// The first record at or after this time (ms since the epoch).
    Time(i64),
}

impl From {
    /// `earliest`, `latest`, a token, or a time (ms since the epoch or RFC 3339).
    pub(crate) fn parse(text: &str) -> Result<Self, Problem> {
        match text {
            "earliest" => Ok(Self::Earliest),
            "latest" => Ok(Self::Latest),
            t if token::looks_like(t) => Ok(Self::Token(t.to_string())),
            t => parse_time(t).map(Self::Time).map_err(|_| {
                Problem::bad_request(format!(
                    "from={t:?}: use earliest, latest, a resume token, or a time (ms since the epoch or RFC 3339 like 2026-11-30T10:00:00Z)"
                ))
            }),
        }
    }
}

/// A time as ms since the epoch or RFC 3339 (`2026-11-30T10:00:00Z`, offsets allowed).
pub(crate) fn parse_time(text: &str) -> Result<i64, Problem> {
    text.parse().or_else(|_| herald_common::time::parse_rfc3339_ms(text)).map_err(Problem::bad_request)
}

impl Cursor {
    /// A cursor on `topic` starting at `from` (blocking: reads the logs' bounds and
    /// time indexes).
    pub(crate) fn open(broker: &Broker, topic: &str, from: &From, filter: Filter) -> Result<Self, Problem> {
        let meta = broker.topic(topic).ok_or_else(|| Problem::not_found(format!("no topic {topic:?}")))?;
        let given = match from {
            From::Token(text) => token::parse(text, meta.partitions).map_err(Problem::bad_request)?,
            _ => Positions::new(),
        };
        let mut positions = Positions::new();
        for partition in 0..meta.partitions as i32 {
            let log = broker.partition(topic, partition).ok_or_else(|| Problem::not_found("partition gone"))?;
            let log = log.log();
            let start = log.log_start_offset() as i64;
            // A partition the filter leaves out is never read: no time lookup for it.
            let at = match from {
                _ if !filter.reads(partition) => start,
                From::Earliest => start,
                From::Latest => log.high_watermark() as i64,
                From::Token(_) => given.get(&partition).copied().unwrap_or(start),
                From::Time(ms) => match log.offset_for_timestamp(*ms).map_err(storage)? {
                    Some(found) => found.offset as i64,
                    None => log.high_watermark() as i64,
                },
            };
            positions.insert(partition, at);
        }
        Ok(Self { topic: topic.to_string(), positions, filter })
    }

    /// A cursor at `positions`.
    #[cfg(test)]
    pub(crate) fn at(topic: &str, positions: Positions, filter: Filter) -> Self {
        Self { topic: topic.to_string(), positions, filter }
    }

    /// The token of the current place.
    pub(crate) fn token(&self) -> String {
        token::format(&self.positions)
    }

    /// The topic.
    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    /// The next offset of every partition.
    pub(crate) fn positions(&self) -> &Positions {
        &self.positions
    }

    /// Takes a record read by someone else (a topic's tail): delivered if it is the one
    /// at this place and passes the filter, skipped if it is behind the place (or
    /// filtered out, which moves the place), `Behind` if records before it were missed.
    pub(crate) fn take(&mut self, message: &Message) -> Take {
        if !self.filter.reads(message.partition) {
            return Take::Skip;
        }
        let at = self.positions.get(&message.partition).copied().unwrap_or(0);
        if message.offset < at {
            return Take::Skip;
        }
        if message.offset > at {
            return Take::Behind;
        }
        self.positions.insert(message.partition, message.offset + 1);
        if self.filter.admits(message) { Take::Deliver } else { Take::Skip }
    }

    /// The next offset of `partition`.
    pub(crate) fn position(&self, partition: i32) -> Option<i64> {
        self.positions.get(&partition).copied()
    }

    /// Reads up to `max_bytes` from each partition with records past its position, in
    /// partition order (blocking: log reads). Filtered-out records move the place too.
    pub(crate) fn read(&mut self, broker: &Arc<Broker>, max_bytes: u32) -> Result<Vec<Item>, Problem> {
        let meta = broker
            .topic(&self.topic)
            .ok_or_else(|| Problem::not_found(format!("topic {:?} was deleted", self.topic)))?;
        let mut items = Vec::new();
        for partition in 0..meta.partitions as i32 {
            // A partition added since the stream began starts at its beginning.
            self.positions.entry(partition).or_insert(0);
            if self.filter.reads(partition) {
                self.read_partition(broker, partition, max_bytes, &mut items)?;
            }
        }
        Ok(items)
    }

    fn read_partition(
        &mut self,
        broker: &Broker,
        partition: i32,
        max_bytes: u32,
        items: &mut Vec<Item>,
    ) -> Result<(), Problem> {
        let Some(log) = broker.partition(&self.topic, partition) else { return Ok(()) };
        let log = log.log();
        let at = self.positions[&partition];
        if at >= log.high_watermark() as i64 {
            return Ok(());
        }
        let read = match log.read(at as u64, max_bytes) {
            Ok(read) => read,
            Err(LogError::OffsetOutOfRange { log_start_offset, .. }) if (log_start_offset as i64) > at => {
                self.positions.insert(partition, log_start_offset as i64);
                items.push(Item::Gap { partition, from: at, to: log_start_offset as i64 });
                return Ok(());
            }
            Err(error) => return Err(storage(error)),
        };
        let (messages, next) = records::decode(partition, read.bytes, at).map_err(Problem::internal)?;
        for message in messages {
            self.positions.insert(partition, message.offset + 1);
            if self.filter.admits(&message) {
                items.push(Item::Event(Box::new(message), self.token()));
            }
        }
        self.positions.insert(partition, next.max(at));
        Ok(())
    }
}

fn storage(error: LogError) -> Problem {
    Problem::internal(format!("reading the log: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_is_a_name_a_token_or_a_time_in_ms_or_rfc3339() {
        assert_eq!(From::parse("earliest"), Ok(From::Earliest));
        assert_eq!(From::parse("0:5,1:7"), Ok(From::Token("0:5,1:7".into())));
        assert_eq!(From::parse("1796032800000"), Ok(From::Time(1_796_032_800_000)));
        assert_eq!(From::parse("2026-11-30T10:00:00Z"), Ok(From::Time(1_796_032_800_000)));
        assert_eq!(From::parse("2026-11-30T11:00:00+01:00"), Ok(From::Time(1_796_032_800_000)));
        assert!(From::parse("yesterday").is_err_and(|p| p.detail.contains("RFC 3339")));
    }
}
