//! Every key a configuration may hold, read from the settings types themselves, so a
//! misspelt section or key stops start-up with its name, where it came from, and the
//! key it probably meant, instead of being silently ignored.

use super::{
    AdminSettings, ApiSettings, DatabaseSettings, FallbackLogSettings, LimitsSettings, NotifySettings, OutboxSettings,
    ReconcileSettings, RetentionSettings, ServerSettings, Settings, SettingsError, SubscriptionSettings,
    WorkerSettings,
};
use serde::de::{self, Deserialize, Deserializer, Visitor};

/// The field names the struct `T` deserializes, asked of its `Deserialize` impl: a
/// deserializer that only records the names it is offered, then stops.
pub fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut recorder = FieldRecorder(&[]);
    let _ = T::deserialize(&mut recorder);
    recorder.0
}

struct FieldRecorder(&'static [&'static str]);

impl<'de> Deserializer<'de> for &mut FieldRecorder {
    type Error = de::value::Error;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0 = fields;
        Err(de::Error::custom("field names recorded"))
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

/// Each section of the configuration and its keys (`providers` apart: each provider
/// declares its own).
pub fn sections() -> Vec<(&'static str, &'static [&'static str])> {
    vec![
        ("server", fields_of::<ServerSettings>()),
        ("database", fields_of::<DatabaseSettings>()),
        ("worker", fields_of::<WorkerSettings>()),
        ("outbox", fields_of::<OutboxSettings>()),
        ("fallback_log", fields_of::<FallbackLogSettings>()),
        ("admin", fields_of::<AdminSettings>()),
        ("notify", fields_of::<NotifySettings>()),
        ("api", fields_of::<ApiSettings>()),
        ("limits", fields_of::<LimitsSettings>()),
        ("retention", fields_of::<RetentionSettings>()),
        ("reconcile", fields_of::<ReconcileSettings>()),
        ("subscriptions", fields_of::<SubscriptionSettings>()),
    ]
}

/// Each provider's name and keys (`enabled` and its configuration type's fields).
pub fn provider_sections() -> Vec<(&'static str, Vec<&'static str>)> {
    crate::startup::providers::PROVIDERS
        .iter()
        .map(|registration| {
            let mut keys = vec!["enabled"];
            keys.extend_from_slice(registration.config_keys());
            (registration.provider.as_str(), keys)
        })
        .collect()
}

/// Refuses the first key of `merged` no settings type reads.
pub fn check_known(merged: &config::Map<String, config::Value>) -> Result<(), SettingsError> {
    let sections = sections();
    let mut top: Vec<&str> = sections.iter().map(|(name, _)| *name).collect();
    top.push("providers");
    for (section, value) in merged {
        if section == "providers" {
            check_providers(value)?;
            continue;
        }
        let Some((_, keys)) = sections.iter().find(|(name, _)| name == section) else {
            return Err(unknown(&format!("section [{section}]"), section, value, &top, |s| {
                format!("[{s}]")
            }));
        };
        if let Ok(table) = value.clone().into_table() {
            for (key, value) in &table {
                if !keys.contains(&key.as_str()) {
                    let path = format!("{section}.{key}");
                    return Err(unknown(&format!("key {path}"), key, value, keys, |k| {
                        format!("{section}.{k}")
                    }));
                }
            }
        }
    }
    Ok(())
}

fn check_providers(value: &config::Value) -> Result<(), SettingsError> {
    let providers = provider_sections();
    let names: Vec<&str> = providers.iter().map(|(name, _)| *name).collect();
    let Ok(tables) = value.clone().into_table() else {
        return Ok(()); // not a table: deserialization names the problem
    };
    for (name, table) in &tables {
        let Some((_, keys)) = providers.iter().find(|(known, _)| known == name) else {
            return Err(unknown(
                &format!("provider [providers.{name}]"),
                name,
                table,
                &names,
                |n| format!("[providers.{n}]"),
            ));
        };
        if let Ok(table) = table.clone().into_table() {
            for (key, value) in &table {
                if !keys.contains(&key.as_str()) {
                    let path = format!("providers.{name}.{key}");
                    return Err(unknown(&format!("key {path}"), key, value, keys, |k| {
                        format!("providers.{name}.{k}")
                    }));
                }
            }
        }
    }
    Ok(())
}

/// "unknown key server.bnd in config/dev.toml (did you mean server.bind?)".
fn unknown(
    what: &str,
    name: &str,
    value: &config::Value,
    known: &[&str],
    spell: impl Fn(&str) -> String,
) -> SettingsError {
    let mut message = format!("unknown {what} in {}", origin(value));
    if let Some(close) = closest(name, known) {
        message.push_str(&format!(" (did you mean {}?)", spell(close)));
    }
    SettingsError::Invalid(message)
}

/// Where a value came from: its file, the environment, or the built-in defaults. A
/// table has no origin of its own; its first value's is used.
fn origin(value: &config::Value) -> String {
    if let Some(origin) = value.origin() {
        return match origin {
            "the environment" => "the environment (PAYHOOK__… variables)".to_owned(),
            file => file.to_owned(),
        };
    }
    match value.clone().into_table() {
        Ok(table) => table
            .values()
            .next()
            .map(origin)
            .unwrap_or_else(|| "the configuration".to_owned()),
        Err(_) => "the built-in defaults".to_owned(),
    }
}

/// The known name nearest to `name`, when it is near enough to be a typo.
fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|candidate| (strsim::damerau_levenshtein(name, candidate), *candidate))
        .filter(|(distance, candidate)| *distance <= (candidate.len() / 3).max(1))
        .min()
        .map(|(_, candidate)| candidate)
}

/// Every top-level field of `Settings` has its section listed (a new section whose
/// keys were not listed would let its typos through).
pub fn every_section_listed() -> Result<(), String> {
    let listed: Vec<&str> = sections().iter().map(|(name, _)| *name).collect();
    for field in fields_of::<Settings>() {
        if *field != "providers" && !listed.contains(field) {
            return Err(format!("settings section {field} is missing from keys::sections()"));
        }
    }
    Ok(())
}
