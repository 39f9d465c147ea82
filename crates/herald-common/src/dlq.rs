//! Herald's dead-letter convention in one place. The consumer runtime copies
//! a record that failed for good to `<topic>.dlq` with `dlq-*` headers telling its story;
//! `herald dlq` (over the Kafka protocol, on any cluster) and the HTTP gateway (in the
//! broker's process) read those dead letters and send them back through the one
//! [`Redrive`] here.
//!
//! It does no IO: callers read records, hand each to
//! [`Redrive::offer`] with the time, and carry out the [`Step`] it returns (send, wait,
//! skip). It refuses a record already redriven `max_redrives` times — the loop guard, kept
//! in the `herald-redrive-count` header that the runtime leaves on a record that fails
//! again — so a poison record cannot circle forever.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What a dead-letter topic's name ends with.
pub const DLQ_SUFFIX: &str = ".dlq";

/// The headers a dead letter carries besides the original ones, in the order written.
pub const DLQ_HEADERS: [&str; 9] = [
    "dlq-original-topic",
    "dlq-original-partition",
    "dlq-original-offset",
    "dlq-original-key",
    "dlq-error-class",
    "dlq-error-message",
    "dlq-attempts",
    "dlq-failed-at",
    "dlq-consumer-group",
];

/// The prefix of every dead-letter header (stripped on the way back, and replaced when a
/// record fails again).
pub const DLQ_HEADER_PREFIX: &str = "dlq-";

/// The header a redrive adds, counting redrives (not `dlq-*`, so it survives a new failure).
pub const REDRIVE_COUNT: &str = "herald-redrive-count";

/// Redrives a record may have had before it is refused, unless told otherwise.
pub const DEFAULT_MAX_REDRIVES: u32 = 3;

/// The consumer group that records how far redrives of a topic got, unless told otherwise.
pub const DEFAULT_PROGRESS_GROUP: &str = "herald-dlq-redrive";

/// The dead-letter topic of `topic` (`orders` and `orders.dlq` both give `orders.dlq`).
pub fn dlq_topic(topic: &str) -> String {
    if is_dlq_topic(topic) { topic.to_string() } else { format!("{topic}{DLQ_SUFFIX}") }
}

/// Whether `topic` is a dead-letter topic by name.
pub fn is_dlq_topic(topic: &str) -> bool {
    topic.ends_with(DLQ_SUFFIX)
}

/// A header as read from a record: its name and value bytes.
pub type RawHeader<'a> = (&'a [u8], Option<&'a [u8]>);

/// A header to write.
pub type OwnedHeader = (Vec<u8>, Option<Vec<u8>>);

/// What a dead letter's headers say (a field is `None` when its header is absent or not
/// UTF-8).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetter {
    /// Where the record came from.
    pub original_topic: Option<String>,
    /// Its partition there.
    pub original_partition: Option<String>,
    /// Its offset there.
    pub original_offset: Option<String>,
    /// `retryable`, `permanent`, `undecodable`, `panicked`, `unknown-type` or `parked`.
    pub error_class: Option<String>,
    /// The handler's error.
    pub error_message: Option<String>,
    /// How many times it was tried.
    pub attempts: Option<String>,
    /// When it was dead-lettered (RFC 3339).
    pub failed_at: Option<String>,
    /// The consumer group that gave up on it.
    pub group: Option<String>,
    /// How many times it was redriven before (0 when never).
    pub redrives: u32,
}

impl DeadLetter {
    /// Reads a record's headers (the last of a repeated name wins, as Kafka clients read).
    pub fn from_headers<'a>(headers: impl IntoIterator<Item = RawHeader<'a>>) -> Self {
        let mut letter = Self::default();
        for (name, value) in headers {
            let text = value.and_then(|v| std::str::from_utf8(v).ok()).map(str::to_string);
            let field = match name {
                b"dlq-original-topic" => &mut letter.original_topic,
                b"dlq-original-partition" => &mut letter.original_partition,
                b"dlq-original-offset" => &mut letter.original_offset,
                b"dlq-error-class" => &mut letter.error_class,
                b"dlq-error-message" => &mut letter.error_message,
                b"dlq-attempts" => &mut letter.attempts,
                b"dlq-failed-at" => &mut letter.failed_at,
                b"dlq-consumer-group" => &mut letter.group,
                n if n == REDRIVE_COUNT.as_bytes() => {
                    letter.redrives = text.and_then(|t| t.parse().ok()).unwrap_or(0);
                    continue;
                }
                _ => continue,
            };
            *field = text;
        }
        letter
    }
}

/// How a redrive runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedriveOptions {
    /// Decide, send nothing, record nothing.
    pub dry_run: bool,
    /// Records per second at most (0: no limit).
    pub rate: u64,
    /// Only records with this key (progress is then not recorded, so other keys stay).
    pub key: Option<Vec<u8>>,
    /// Refuse records already redriven this many times.
    pub max_redrives: u32,
    /// Only these (partition, offset) records (progress is then not recorded, so the
    /// others stay).
    pub records: Option<std::collections::BTreeSet<(i32, i64)>>,
}

impl Default for RedriveOptions {
    fn default() -> Self {
        Self { dry_run: false, rate: 0, key: None, max_redrives: DEFAULT_MAX_REDRIVES, records: None }
    }
}

/// A record to send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resend {
    /// The original topic.
    pub to: String,
    /// Not before this time (the rate limit).
    pub at: Instant,
    /// The original headers without `dlq-*`, plus the new redrive count.
    pub headers: Vec<OwnedHeader>,
    /// This record's redrive number (1 for the first).
    pub redrive: u32,
}

/// What to do with one record of the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send it (its key and value unchanged).
    Send(Resend),
    /// A dry run: it would be sent to `to` as redrive number `redrive`.
    WouldSend {
        /// The original topic.
        to: String,
        /// Its redrive number.
        redrive: u32,
    },
    /// Redriven `max_redrives` times already.
    Refused,
    /// Another key than the one asked for.
    Filtered,
    /// No `dlq-original-topic` header: not a dead letter.
    NotDeadLetter,
}

/// Counts of a redrive's decisions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Sent back (or, in a dry run, would be).
    pub redriven: u64,
    /// Refused at the loop guard.
    pub refused: u64,
    /// Left for their key.
    pub filtered: u64,
    /// Without `dlq-original-topic`.
    pub not_dead_letters: u64,
}

/// One redrive's decisions: fed the dead-letter topic's records in order, from where the
/// last redrive got to, it says what to do with each and how far the redrive got.
#[derive(Debug, Clone)]
pub struct Redrive {
    options: RedriveOptions,
    started: Instant,
    tally: Tally,
    /// Partition -> the offset after the last record sent.
    progress: BTreeMap<i32, i64>,
}

impl Redrive {
    /// A redrive starting `now`.
    pub fn new(options: RedriveOptions, now: Instant) -> Self {
        Self { options, started: now, tally: Tally::default(), progress: BTreeMap::new() }
    }

    /// The options it runs with.
    pub fn options(&self) -> &RedriveOptions {
        &self.options
    }

    /// Decides about the record at `partition`/`offset` with `key` and `headers`.
    pub fn offer(&mut self, partition: i32, offset: i64, key: Option<&[u8]>, headers: &[RawHeader<'_>]) -> Step {
        let unselected = self.options.records.as_ref().is_some_and(|only| !only.contains(&(partition, offset)));
        if unselected || self.options.key.as_deref().is_some_and(|wanted| key != Some(wanted)) {
            self.tally.filtered += 1;
            return Step::Filtered;
        }
        let letter = DeadLetter::from_headers(headers.iter().copied());
        let Some(to) = letter.original_topic else {
            self.tally.not_dead_letters += 1;
            return Step::NotDeadLetter;
        };
        if letter.redrives >= self.options.max_redrives {
            self.tally.refused += 1;
            return Step::Refused;
        }
        let redrive = letter.redrives + 1;
        let sent_before = self.tally.redriven;
        self.tally.redriven += 1;
        if self.options.dry_run {
            return Step::WouldSend { to, redrive };
        }
        self.progress.insert(partition, offset + 1);
        let at = match self.options.rate {
            0 => self.started,
            rate => self.started + Duration::from_secs_f64(sent_before as f64 / rate as f64),
        };
        Step::Send(Resend { to, at, headers: resent_headers(headers, redrive), redrive })
    }

    /// The counts so far.
    pub fn tally(&self) -> Tally {
        self.tally
    }

    /// Where to record that the redrive got to, once every send was acknowledged: each
    /// partition's offset after its last record sent. `None` for a dry run, a redrive of
    /// one key or of chosen records (the others stay for later), or when nothing was sent.
    pub fn progress(&self) -> Option<&BTreeMap<i32, i64>> {
        let whole = self.options.key.is_none() && self.options.records.is_none();
        let recorded = !self.options.dry_run && whole && !self.progress.is_empty();
        recorded.then_some(&self.progress)
    }
}

/// `headers` without the dead-letter ones and the old count, plus the count `redrive`.
fn resent_headers(headers: &[RawHeader<'_>], redrive: u32) -> Vec<OwnedHeader> {
    let mut out: Vec<OwnedHeader> = headers
        .iter()
        .filter(|(name, _)| !name.starts_with(DLQ_HEADER_PREFIX.as_bytes()) && *name != REDRIVE_COUNT.as_bytes())
        .map(|(name, value)| (name.to_vec(), value.map(<[u8]>::to_vec)))
        .collect();
    out.push((REDRIVE_COUNT.as_bytes().to_vec(), Some(redrive.to_string().into_bytes())));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(redrives: Option<&'static str>) -> Vec<RawHeader<'static>> {
        let mut headers: Vec<RawHeader<'static>> = vec![
            (b"event-type", Some(b"order.placed")),
            (b"dlq-original-topic", Some(b"orders")),
            (b"dlq-error-class", Some(b"permanent")),
        ];
        if let Some(count) = redrives {
            headers.push((REDRIVE_COUNT.as_bytes(), Some(count.as_bytes())));
        }
        headers
    }

    #[test]
    fn a_dead_letter_is_read_from_its_headers() {
        let read = DeadLetter::from_headers(letter(Some("2")));
        assert_eq!(read.original_topic.as_deref(), Some("orders"));
        assert_eq!(read.error_class.as_deref(), Some("permanent"));
        assert_eq!((read.redrives, read.error_message), (2, None));
        assert_eq!(DeadLetter::from_headers(letter(Some("x"))).redrives, 0, "a bad count reads as none");
    }

    #[test]
    fn a_resent_record_loses_dlq_headers_and_counts_its_redrive() {
        let now = Instant::now();
        let mut redrive = Redrive::new(RedriveOptions::default(), now);
        let Step::Send(resend) = redrive.offer(0, 7, None, &letter(Some("1"))) else { panic!("sent") };
        assert_eq!((resend.to.as_str(), resend.redrive, resend.at), ("orders", 2, now));
        let names: Vec<&[u8]> = resend.headers.iter().map(|(n, _)| n.as_slice()).collect();
        assert_eq!(names, [b"event-type".as_slice(), REDRIVE_COUNT.as_bytes()]);
        assert_eq!(resend.headers[1].1.as_deref(), Some(b"2".as_slice()));
        assert_eq!(redrive.progress().map(|p| p[&0]), Some(8));
    }

    #[test]
    fn chosen_records_alone_are_sent_and_progress_is_not_recorded() {
        let only = [(0, 3), (1, 5)].into_iter().collect();
        let mut redrive = Redrive::new(RedriveOptions { records: Some(only), ..Default::default() }, Instant::now());
        assert_eq!(redrive.offer(0, 2, None, &letter(None)), Step::Filtered);
        assert!(matches!(redrive.offer(0, 3, None, &letter(None)), Step::Send(_)));
        assert_eq!(redrive.offer(1, 3, None, &letter(None)), Step::Filtered);
        assert!(matches!(redrive.offer(1, 5, None, &letter(None)), Step::Send(_)));
        assert_eq!((redrive.tally().redriven, redrive.tally().filtered), (2, 2));
        assert_eq!(redrive.progress(), None, "the records not chosen stay for a later redrive");
    }

    #[test]
    fn the_loop_guard_the_key_filter_and_strangers_are_counted_not_sent() {
        let mut redrive =
            Redrive::new(RedriveOptions { key: Some(b"a".to_vec()), ..Default::default() }, Instant::now());
        assert_eq!(redrive.offer(0, 0, Some(b"b"), &letter(None)), Step::Filtered);
        assert_eq!(redrive.offer(0, 1, Some(b"a"), &letter(Some("3"))), Step::Refused);
        assert_eq!(redrive.offer(0, 2, Some(b"a"), &[(b"x".as_slice(), None)]), Step::NotDeadLetter);
        assert!(matches!(redrive.offer(0, 3, Some(b"a"), &letter(None)), Step::Send(_)));
        let tally = redrive.tally();
        assert_eq!((tally.redriven, tally.refused, tally.filtered, tally.not_dead_letters), (1, 1, 1, 1));
        assert_eq!(redrive.progress(), None, "one key's redrive leaves progress for the others");
    }

    #[test]
    fn a_dry_run_decides_but_records_nothing() {
        let mut redrive = Redrive::new(RedriveOptions { dry_run: true, ..Default::default() }, Instant::now());
        assert_eq!(redrive.offer(1, 0, None, &letter(None)), Step::WouldSend { to: "orders".into(), redrive: 1 });
        assert_eq!((redrive.tally().redriven, redrive.progress()), (1, None));
    }

    #[test]
    fn a_rate_spaces_the_sends() {
        let now = Instant::now();
        let mut redrive = Redrive::new(RedriveOptions { rate: 4, ..Default::default() }, now);
        let ats: Vec<Duration> = (0..3)
            .map(|offset| match redrive.offer(0, offset, None, &letter(None)) {
                Step::Send(resend) => resend.at - now,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ats, [Duration::ZERO, Duration::from_millis(250), Duration::from_millis(500)]);
    }

    #[test]
    fn names_of_dead_letter_topics() {
        assert_eq!((dlq_topic("orders"), dlq_topic("orders.dlq")), ("orders.dlq".into(), "orders.dlq".into()));
        assert!(is_dlq_topic("a.dlq") && !is_dlq_topic("a"));
    }
}
