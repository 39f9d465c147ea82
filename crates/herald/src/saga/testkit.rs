//! [`SagaTest`]: a saga run in memory through the same planning code as the runner, with
//! a manual clock: `given(events).when(event).then_sends(types)`, and `advance(by)` to fire
//! the deadlines that come due.

use std::collections::BTreeMap;
use std::time::Duration;

use super::plan::{Input, Instance, Plan, plan};
use super::{End, Incoming, Outgoing, Saga};
use crate::envelope::ENVELOPE_BYTES_MAX_DEFAULT;

/// One saga instance in memory. Its methods panic with a message when an expectation
/// fails (it is for tests).
#[derive(Debug)]
pub struct SagaTest<S: Saga> {
    saga: S,
    id: Option<String>,
    instance: Option<Instance>,
    now_ms: i64,
    /// Deadline name -> due time.
    deadlines: BTreeMap<String, i64>,
    sent: Vec<Outgoing>,
    history: Vec<(String, String)>,
    /// Events that came too early (or before their instance), tried again after each step.
    waiting: Vec<Incoming>,
}

impl<S: Saga> SagaTest<S> {
    /// `saga` with no instance yet, the clock at 0.
    pub fn new(saga: S) -> Self {
        let (deadlines, sent, history, waiting) = (BTreeMap::new(), Vec::new(), Vec::new(), Vec::new());
        Self { saga, id: None, instance: None, now_ms: 0, deadlines, sent, history, waiting }
    }

    /// Applies `events` in order (what they send is forgotten).
    pub fn given(mut self, events: impl IntoIterator<Item = Incoming>) -> Self {
        for event in events {
            self.apply(Input::Event(&event));
        }
        self.sent.clear();
        self
    }

    /// Applies `event`; what it sends is what `then_sends` checks.
    pub fn when(mut self, event: Incoming) -> Self {
        self.sent.clear();
        self.apply(Input::Event(&event));
        self
    }

    /// Moves the clock by `by`, firing the deadlines that come due, earliest first.
    pub fn advance(mut self, by: Duration) -> Self {
        self.sent.clear();
        self.now_ms += i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        loop {
            let due = self.deadlines.iter().filter(|(_, due)| **due <= self.now_ms).min_by_key(|(_, due)| **due);
            let Some(name) = due.map(|(name, _)| name.clone()) else { break };
            self.deadlines.remove(&name);
            self.apply(Input::Deadline(&name));
        }
        self
    }

    /// Checks the types of the messages the last `when` or `advance` sent, in order.
    #[track_caller]
    pub fn then_sends(self, types: &[&str]) -> Self {
        let sent: Vec<&str> = self.sent.iter().map(|m| m.event_type.as_str()).collect();
        assert_eq!(sent, types, "sent by the last step (history: {:?})", self.history);
        self
    }

    /// Checks how the instance ended (`None`: still running).
    #[track_caller]
    pub fn then_ended(self, end: Option<End>) -> Self {
        let status = self.instance.as_ref().map_or("none", |i| i.status.as_str()).to_string();
        let want = match end {
            None => "running",
            Some(End::Completed) => "completed",
            Some(End::Compensated) => "compensated",
        };
        assert_eq!(status, want, "history: {:?}", self.history);
        self
    }

    /// The pending deadlines: name and due time (ms on the test's clock).
    pub fn deadlines(&self) -> Vec<(String, i64)> {
        self.deadlines.iter().map(|(name, due)| (name.clone(), *due)).collect()
    }

    /// The messages the last step sent.
    pub fn sent(&self) -> &[Outgoing] {
        &self.sent
    }

    /// The state now.
    #[track_caller]
    pub fn state(&self) -> S::State {
        let instance = self.instance.as_ref().expect("an instance was started");
        serde_json::from_str(&instance.state).expect("the state reads back")
    }

    /// The history: kind and what, oldest first.
    pub fn history(&self) -> &[(String, String)] {
        &self.history
    }

    /// Applies `input`, then retries the events that were waiting until none moves.
    #[track_caller]
    fn apply(&mut self, input: Input<'_>) {
        if !self.apply_once(input)
            && let Input::Event(event) = input
        {
            self.waiting.push(event.clone());
        }
        while let Some(index) = (0..self.waiting.len()).find(|&i| {
            let event = self.waiting[i].clone();
            self.apply_once(Input::Event(&event))
        }) {
            self.waiting.remove(index);
        }
    }

    /// Applies `input`; false if it has to wait (no instance yet, or not ready for it).
    #[track_caller]
    fn apply_once(&mut self, input: Input<'_>) -> bool {
        if let Input::Event(event) = input
            && self.id.is_none()
        {
            self.id = self.saga.instance_of(event);
        }
        let id = self.id.clone().unwrap_or_default();
        let planned = plan(&self.saga, &id, self.instance.clone(), input, self.now_ms, ENVELOPE_BYTES_MAX_DEFAULT);
        let write = match planned.expect("the decision encodes") {
            Plan::Write(write) => write,
            Plan::NotStarted | Plan::NotYet => return false,
            Plan::Ended => return true,
        };
        for row in &write.history {
            self.history.push((row.kind.to_string(), row.what.clone()));
        }
        if write.cancel_all {
            self.deadlines.clear();
        }
        for name in &write.cancel {
            self.deadlines.remove(name);
        }
        if !write.cancel_all {
            self.deadlines.extend(write.set.iter().cloned());
        }
        for row in &write.outbox {
            let envelope: crate::Envelope<serde_json::Value> =
                serde_json::from_slice(&row.payload).expect("an envelope");
            let key = row.key.clone();
            let (event_type, data) = (envelope.event_type, envelope.data);
            let version = envelope.event_version.split('.').next().and_then(|v| v.parse().ok()).unwrap_or(1);
            self.sent.push(Outgoing { event_type, version, topic: row.topic.clone(), key, data });
        }
        self.instance = Some(write.instance);
        true
    }
}
