//! [`Event`]: what a type needs to travel in the envelope, and the [`event!`](crate::event)
//! macro that implements it in one line.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A domain event: its type name, version, default topic and partition key.
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// `{domain}.{action}`, e.g. `user.created`.
    const TYPE: &'static str;
    /// The schema version (`eventVersion` is written as `"<VERSION>.0.0"`).
    const VERSION: u32;
    /// The topic it is published to unless told otherwise.
    const TOPIC: &'static str;
    /// The partition key (the entity id), so one entity's events keep their order.
    fn key(&self) -> Option<String>;
}

/// Implements [`Event`] for a serde type, checking the names at compile time:
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct UserCreated { user_id: String, email: String }
/// herald::event!(UserCreated, type = "user.created", version = 1, key = user_id);
/// ```
///
/// The topic defaults to the event type; give it with `topic = "..."` after the version.
/// Use `key = none` for events without a key. A name that breaks the conventions does
/// not compile:
///
/// ```compile_fail
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Bad { id: String }
/// herald::event!(Bad, type = "UserCreated", version = 1, key = id);
/// ```
#[macro_export]
macro_rules! event {
    ($ty:ty, type = $type:literal, version = $version:literal, key = none) => {
        $crate::event!(@impl $ty, $type, $version, $type, |_e: &$ty| None);
    };
    ($ty:ty, type = $type:literal, version = $version:literal, key = $key:ident) => {
        $crate::event!(@impl $ty, $type, $version, $type, |e: &$ty| Some(e.$key.to_string()));
    };
    ($ty:ty, type = $type:literal, version = $version:literal, topic = $topic:literal, key = none) => {
        $crate::event!(@impl $ty, $type, $version, $topic, |_e: &$ty| None);
    };
    ($ty:ty, type = $type:literal, version = $version:literal, topic = $topic:literal, key = $key:ident) => {
        $crate::event!(@impl $ty, $type, $version, $topic, |e: &$ty| Some(e.$key.to_string()));
    };
    (@impl $ty:ty, $type:literal, $version:literal, $topic:literal, $key:expr) => {
        const _: () = assert!($crate::names::is_valid_event_type($type), "event type must be `{{domain}}.{{action}}`, lowercase");
        const _: () = assert!($crate::names::is_valid_topic($topic), "topic must be lowercase `{{domain}}.{{action}}` or `{{domain}}.{{entity}}.{{action}}`");
        impl $crate::Event for $ty {
            const TYPE: &'static str = $type;
            const VERSION: u32 = $version;
            const TOPIC: &'static str = $topic;
            fn key(&self) -> Option<String> {
                let key: fn(&$ty) -> Option<String> = $key;
                key(self)
            }
        }
    };
}
