//! What the console shows over time: every few seconds a sample of how many records the
//! topics hold and the groups committed (rates come from the difference of two samples)
//! and each group's total lag (the chart on a group's page). [`History`] is plain code
//! taking samples; [`sample`] and [`run`] are the IO around it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_broker::internals::{Broker, now_ms};

/// One look at the broker.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Sample {
    /// When (ms since the epoch).
    pub(crate) at_ms: i64,
    /// Each topic's records ever written (the sum of its high watermarks).
    pub(crate) written: BTreeMap<String, i64>,
    /// Records the groups committed past since the sample before: the rises of each
    /// (group, topic, partition) committed offset (a reset back or a new group counts 0).
    pub(crate) consumed: i64,
    /// Each group's total lag in records.
    pub(crate) lag: BTreeMap<String, i64>,
}

/// The last samples, oldest first.
#[derive(Debug)]
pub(crate) struct History {
    samples: VecDeque<Sample>,
    capacity: usize,
}

impl History {
    /// Keeps at most `capacity` samples.
    pub(crate) fn new(capacity: usize) -> Self {
        Self { samples: VecDeque::new(), capacity: capacity.max(2) }
    }

    /// Adds a sample, dropping the oldest when full.
    pub(crate) fn record(&mut self, sample: Sample) {
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// Records written and committed per second between the last two samples (`None`
    /// before there are two). A counter that went down (a topic deleted, offsets reset)
    /// counts as no progress.
    pub(crate) fn rates(&self) -> (Option<f64>, Option<f64>) {
        let n = self.samples.len();
        if n < 2 {
            return (None, None);
        }
        let (old, new) = (&self.samples[n - 2], &self.samples[n - 1]);
        let seconds = (new.at_ms - old.at_ms) as f64 / 1000.0;
        if seconds <= 0.0 {
            return (None, None);
        }
        let per_second = |a: i64, b: i64| Some((b - a).max(0) as f64 / seconds);
        let written = new.written.iter().map(|(topic, n)| (n - old.written.get(topic).unwrap_or(n)).max(0)).sum();
        (per_second(0, written), per_second(0, new.consumed))
    }

    /// Records written to `topic` per second between the last two samples.
    pub(crate) fn topic_rate(&self, topic: &str) -> Option<f64> {
        let n = self.samples.len();
        let (old, new) = (self.samples.get(n.checked_sub(2)?)?, &self.samples[n - 1]);
        let seconds = (new.at_ms - old.at_ms) as f64 / 1000.0;
        let (a, b) = (old.written.get(topic)?, new.written.get(topic)?);
        (seconds > 0.0).then(|| (b - a).max(0) as f64 / seconds)
    }

    /// `group`'s total lag over time: (ms since the epoch, records).
    pub(crate) fn lag_of(&self, group: &str) -> Vec<(i64, i64)> {
        self.samples.iter().filter_map(|s| s.lag.get(group).map(|lag| (s.at_ms, *lag))).collect()
    }
}

/// Every committed offset: (group, topic, partition) -> offset.
pub(crate) type Committed = BTreeMap<(String, String, i32), i64>;

/// The records committed past between `old` and `new`: rises only, for places in both.
fn rises(old: &Committed, new: &Committed) -> i64 {
    new.iter().filter_map(|(at, offset)| old.get(at).map(|before| (offset - before).max(0))).sum()
}

/// Looks at the broker now (in memory: no log reads); `before` holds the committed
/// offsets of the last look and is replaced by today's.
pub(crate) fn sample(broker: &Broker, before: &mut Committed) -> Sample {
    let mut written = BTreeMap::new();
    for (name, meta) in broker.topics() {
        let total = (0..meta.partitions as i32)
            .filter_map(|p| broker.partition(&name, p))
            .map(|partition| partition.log().high_watermark() as i64)
            .sum();
        written.insert(name, total);
    }
    let (mut committed, mut lag) = (Committed::new(), BTreeMap::new());
    for group in broker.groups().offsets().groups() {
        let partitions = broker.group_lag(&group);
        for p in &partitions {
            if let Some(offset) = p.committed {
                committed.insert((group.clone(), p.topic.clone(), p.partition), offset);
            }
        }
        lag.insert(group, partitions.iter().map(|p| p.lag).sum());
    }
    let consumed = rises(before, &committed);
    *before = committed;
    Sample { at_ms: now_ms(), written, consumed, lag }
}

/// Samples `broker` every `every` into `history` until `stopping` turns true.
pub(crate) async fn run(
    broker: Arc<Broker>,
    history: Arc<Mutex<History>>,
    every: Duration,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let mut committed = Committed::new();
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                let sample = sample(&broker, &mut committed);
                if let Ok(mut history) = history.lock() {
                    history.record(sample);
                }
            }
            _ = stopping.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(at_ms: i64, written: i64, consumed: i64, lag: &[(&str, i64)]) -> Sample {
        let lag = lag.iter().map(|(g, l)| (g.to_string(), *l)).collect();
        Sample { at_ms, written: [("t".to_string(), written)].into(), consumed, lag }
    }

    #[test]
    fn consumption_counts_rises_of_known_places_only() {
        let place = |g: &str, p: i32, o: i64| ((g.to_string(), "t".to_string(), p), o);
        let old: Committed = [place("a", 0, 10), place("a", 1, 50), place("b", 0, 7)].into();
        let new: Committed = [place("a", 0, 15), place("a", 1, 0), place("b", 0, 9), place("c", 0, 1_000)].into();
        assert_eq!(rises(&old, &new), 7, "5 + 2; a reset back and a new group count nothing");
    }

    #[test]
    fn rates_come_from_the_last_two_samples_and_never_go_negative() {
        let mut history = History::new(3);
        assert_eq!(history.rates(), (None, None));
        history.record(at(0, 100, 0, &[("g", 90)]));
        history.record(at(2_000, 300, 40, &[("g", 250)]));
        assert_eq!(history.rates(), (Some(100.0), Some(20.0)));
        assert_eq!(history.topic_rate("t"), Some(100.0));
        assert_eq!(history.topic_rate("other"), None);
        history.record(at(4_000, 200, 0, &[]));
        assert_eq!(history.rates(), (Some(0.0), Some(0.0)), "a deleted topic is no negative rate");
        history.record(at(6_000, 210, 10, &[("g", 1)]));
        assert_eq!(history.lag_of("g"), [(2_000, 250), (6_000, 1)], "the oldest sample fell out");
    }
}
