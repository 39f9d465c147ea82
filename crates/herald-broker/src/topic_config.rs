//! Topic configs: the Kafka names this broker understands and how they map onto a
//! partition's [`LogConfig`].
//!
//! Only configs that change behaviour here are accepted; any other name is rejected with
//! INVALID_CONFIG rather than stored and silently ignored.

use std::collections::BTreeMap;

use herald_log::LogConfig;

use crate::compaction::CompactionPolicy;

/// Kafka's config types, as DescribeConfigs v3+ reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConfigType {
    /// A 32-bit integer.
    Int = 3,
    /// A 64-bit integer.
    Long = 5,
    /// A floating-point number.
    Double = 6,
    /// A comma-separated list.
    List = 7,
}

/// One topic config this broker supports.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConfigDef {
    /// Kafka's name.
    pub name: &'static str,
    /// Its type.
    pub kind: ConfigType,
    /// What it does, for DescribeConfigs with documentation.
    pub doc: &'static str,
}

/// Every supported topic config, sorted by name.
pub(crate) const TOPIC_CONFIGS: &[ConfigDef] = &[
    ConfigDef {
        name: "cleanup.policy",
        kind: ConfigType::List,
        doc: "\"delete\" (retention), \"compact\" (keep each key's latest record), or both.",
    },
    ConfigDef {
        name: "delete.retention.ms",
        kind: ConfigType::Long,
        doc: "How long compaction keeps a tombstone that is its key's latest record.",
    },
    ConfigDef {
        name: "max.compaction.lag.ms",
        kind: ConfigType::Long,
        doc: "A record left uncompacted this long makes its partition due for cleaning.",
    },
    ConfigDef { name: "max.message.bytes", kind: ConfigType::Int, doc: "Largest record batch accepted." },
    ConfigDef {
        name: "min.cleanable.dirty.ratio",
        kind: ConfigType::Double,
        doc: "The share of uncleaned bytes that makes a compacted partition due for cleaning.",
    },
    ConfigDef {
        name: "min.compaction.lag.ms",
        kind: ConfigType::Long,
        doc: "Records younger than this are never compacted.",
    },
    ConfigDef {
        name: "retention.bytes",
        kind: ConfigType::Long,
        doc: "Delete old segments past this size; -1 for no limit.",
    },
    ConfigDef {
        name: "retention.ms",
        kind: ConfigType::Long,
        doc: "Delete segments older than this; -1 for no limit.",
    },
    ConfigDef { name: "segment.bytes", kind: ConfigType::Int, doc: "Roll to a new segment file at this size." },
    ConfigDef { name: "segment.ms", kind: ConfigType::Long, doc: "Roll to a new segment after this long." },
];

/// The definition of `name`, if supported.
pub(crate) fn definition(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Applies topic overrides to the broker's log defaults; the error says which config is
/// wrong and why, in words fit for the client.
pub(crate) fn log_config(defaults: &LogConfig, overrides: &BTreeMap<String, String>) -> Result<LogConfig, String> {
    let mut config = *defaults;
    for (name, value) in overrides {
        apply(&mut config, name, value)?;
    }
    config.validate().map_err(|e| e.to_string())?;
    let (compact, delete) = cleanup_policy(overrides.get("cleanup.policy").map_or("delete", String::as_str))?;
    let policy = compaction_settings(overrides)?;
    if compact && !delete {
        // Kafka's rule: a compact-only topic keeps each key's latest record forever.
        config.retention_ms = None;
        config.retention_bytes = None;
    }
    if policy.min_compaction_lag_ms > policy.max_compaction_lag_ms {
        return Err("min.compaction.lag.ms: must not exceed max.compaction.lag.ms".to_string());
    }
    Ok(config)
}

/// The compaction settings of a topic whose `cleanup.policy` includes `compact`; `None`
/// for a delete-only topic (or overrides that do not parse, which were refused when set).
pub(crate) fn compaction(overrides: &BTreeMap<String, String>) -> Option<CompactionPolicy> {
    let (compact, _) = cleanup_policy(overrides.get("cleanup.policy")?).ok()?;
    if !compact {
        return None;
    }
    compaction_settings(overrides).ok()
}

/// `(compact, delete)` of a `cleanup.policy` value.
fn cleanup_policy(value: &str) -> Result<(bool, bool), String> {
    let (mut compact, mut delete) = (false, false);
    for policy in value.split(',').map(str::trim) {
        match policy {
            "compact" => compact = true,
            "delete" => delete = true,
            other => return Err(format!("cleanup.policy: {other:?} is not \"delete\" or \"compact\"")),
        }
    }
    if !compact && !delete {
        return Err("cleanup.policy: empty".to_string());
    }
    Ok((compact, delete))
}

fn compaction_settings(overrides: &BTreeMap<String, String>) -> Result<CompactionPolicy, String> {
    let mut policy = CompactionPolicy::default();
    for (name, value) in overrides {
        let long = || match value.trim().parse::<i64>() {
            Ok(v) if v >= 0 => Ok(v),
            _ => Err(format!("{name}: {value:?} is not a non-negative integer")),
        };
        match name.as_str() {
            "delete.retention.ms" => policy.delete_retention_ms = long()?,
            "min.compaction.lag.ms" => policy.min_compaction_lag_ms = long()?,
            "max.compaction.lag.ms" => policy.max_compaction_lag_ms = long()?.max(1),
            "min.cleanable.dirty.ratio" => {
                policy.min_cleanable_dirty_ratio = value
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| format!("min.cleanable.dirty.ratio: {value:?} is not a number from 0 to 1"))?;
            }
            _ => {}
        }
    }
    Ok(policy)
}

fn apply(config: &mut LogConfig, name: &str, value: &str) -> Result<(), String> {
    let long = || value.trim().parse::<i64>().map_err(|_| format!("{name}: {value:?} is not an integer"));
    let optional = |v: i64| match v {
        -1 => Ok(None),
        v if v >= 0 => Ok(Some(v as u64)),
        _ => Err(format!("{name}: must be -1 or at least 0")),
    };
    match name {
        // Checked with the other compaction settings in `log_config`.
        "cleanup.policy"
        | "delete.retention.ms"
        | "min.compaction.lag.ms"
        | "max.compaction.lag.ms"
        | "min.cleanable.dirty.ratio" => {}
        "max.message.bytes" => {
            let v = long()?;
            config.batch_bytes_max = u32::try_from(v)
                .ok()
                .filter(|v| *v >= 64)
                .ok_or_else(|| format!("max.message.bytes: {v} is out of range (64 ..= {})", u32::MAX))?;
        }
        "retention.bytes" => config.retention_bytes = optional(long()?)?,
        "retention.ms" => config.retention_ms = optional(long()?)?,
        "segment.bytes" => {
            let v = long()?;
            config.segment_bytes = u64::try_from(v)
                .ok()
                .filter(|v| (1024..=u64::from(i32::MAX as u32)).contains(v))
                .ok_or_else(|| format!("segment.bytes: {v} is out of range (1024 ..= {})", i32::MAX))?;
        }
        "segment.ms" => {
            let v = long()?;
            config.segment_ms = Some(u64::try_from(v).ok().filter(|v| *v >= 1).ok_or("segment.ms: must be positive")?);
        }
        _ => return Err(format!("unknown topic config {name:?}")),
    }
    Ok(())
}

/// The value a config has when a topic does not override it.
pub(crate) fn default_value(defaults: &LogConfig, name: &str) -> Option<String> {
    let optional = |v: Option<u64>| v.map_or("-1".to_string(), |v| v.to_string());
    Some(match name {
        "cleanup.policy" => "delete".to_string(),
        "delete.retention.ms" => CompactionPolicy::default().delete_retention_ms.to_string(),
        "min.compaction.lag.ms" => CompactionPolicy::default().min_compaction_lag_ms.to_string(),
        "max.compaction.lag.ms" => CompactionPolicy::default().max_compaction_lag_ms.to_string(),
        "min.cleanable.dirty.ratio" => CompactionPolicy::default().min_cleanable_dirty_ratio.to_string(),
        "max.message.bytes" => defaults.batch_bytes_max.to_string(),
        "retention.bytes" => optional(defaults.retention_bytes),
        "retention.ms" => optional(defaults.retention_ms),
        "segment.bytes" => defaults.segment_bytes.to_string(),
        "segment.ms" => optional(defaults.segment_ms),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_map_onto_the_log_config() {
        let defaults = LogConfig::default();
        let overrides: BTreeMap<String, String> = [
            ("retention.ms", "-1"),
            ("retention.bytes", "1048576"),
            ("segment.bytes", "4096"),
            ("max.message.bytes", "2000"),
            ("cleanup.policy", "delete"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let config = log_config(&defaults, &overrides).expect("valid");
        assert_eq!(config.retention_ms, None);
        assert_eq!(config.retention_bytes, Some(1_048_576));
        assert_eq!(config.segment_bytes, 4096);
        assert_eq!(config.batch_bytes_max, 2000);
    }

    #[test]
    fn bad_values_and_unknown_names_are_rejected_with_the_name() {
        let defaults = LogConfig::default();
        for (name, value) in [
            ("cleanup.policy", "compress"),
            ("min.cleanable.dirty.ratio", "2"),
            ("delete.retention.ms", "-5"),
            ("retention.ms", "soon"),
            ("retention.ms", "-2"),
            ("segment.bytes", "10"),
            ("max.message.bytes", "-1"),
            ("compression.type", "zstd"),
        ] {
            let overrides = BTreeMap::from([(name.to_string(), value.to_string())]);
            let error = log_config(&defaults, &overrides).expect_err(name);
            assert!(error.contains(name), "{error}");
        }
    }

    #[test]
    fn compact_topics_get_their_policy_and_no_retention_unless_delete_too() {
        let defaults = LogConfig::default();
        let overrides = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let compact = overrides(&[
            ("cleanup.policy", "compact"),
            ("delete.retention.ms", "10"),
            ("min.cleanable.dirty.ratio", "0.1"),
        ]);
        let policy = compaction(&compact).expect("compacted");
        assert_eq!((policy.delete_retention_ms, policy.min_cleanable_dirty_ratio), (10, 0.1));
        assert_eq!(log_config(&defaults, &compact).expect("valid").retention_ms, None);
        let both = overrides(&[("cleanup.policy", "compact,delete")]);
        assert!(compaction(&both).is_some());
        assert_eq!(log_config(&defaults, &both).expect("valid").retention_ms, defaults.retention_ms);
        assert!(compaction(&overrides(&[("cleanup.policy", "delete")])).is_none());
        assert!(compaction(&BTreeMap::new()).is_none());
        let inverted = overrides(&[("min.compaction.lag.ms", "10"), ("max.compaction.lag.ms", "5")]);
        assert!(log_config(&defaults, &inverted).is_err());
    }

    #[test]
    fn every_supported_config_has_a_default() {
        for def in TOPIC_CONFIGS {
            assert!(default_value(&LogConfig::default(), def.name).is_some(), "{}", def.name);
        }
    }
}
