//! Text payhook stores as text or JSON. Postgres holds neither U+0000 in `text` nor
//! `\u0000` in `jsonb`, and SQLite holds both; so that both stores take the same
//! events and answer the same way, a NUL character in any string of an event is
//! replaced by U+FFFD (the replacement character) before it is stored. A NUL in a
//! payment event's strings carries no meaning for payments; the request's raw body,
//! kept byte for byte in the forensic log, is the evidence of what was sent.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// What replaces a NUL character.
pub const NUL_REPLACEMENT: char = '\u{FFFD}';

/// Whether a JSON body may hold a NUL character in a string (the only way JSON can:
/// the escape `\u0000`, in either case). A cheap test before [`scrub_nul`].
pub fn may_hold_nul(json: &[u8]) -> bool {
    json.windows(6)
        .any(|w| w[0] == b'\\' && (w[1] == b'u' || w[1] == b'U') && &w[2..6] == b"0000")
}

/// `text` with every NUL replaced.
pub fn without_nul(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', &NUL_REPLACEMENT.to_string()))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// `value` with every NUL in its strings (object keys included) replaced; `value`
/// itself when it holds none or does not read back.
pub fn scrub_nul<T: Serialize + DeserializeOwned>(value: T) -> T {
    let Ok(mut json) = serde_json::to_value(&value) else {
        return value;
    };
    if !scrub(&mut json) {
        return value;
    }
    serde_json::from_value(json).unwrap_or(value)
}

/// Replaces NUL in place; whether anything changed.
fn scrub(value: &mut Value) -> bool {
    match value {
        Value::String(s) if s.contains('\0') => {
            *s = without_nul(s).into_owned();
            true
        }
        Value::Array(items) => items.iter_mut().fold(false, |changed, v| scrub(v) | changed),
        Value::Object(map) => {
            let mut changed = false;
            if map.keys().any(|k| k.contains('\0')) {
                let entries: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
                for (k, v) in entries {
                    map.insert(without_nul(&k).into_owned(), v);
                }
                changed = true;
            }
            map.values_mut().fold(changed, |changed, v| scrub(v) | changed)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nul_in_strings_and_keys_is_replaced_everywhere_else_kept() {
        let value = json!({ "id": "evt\u{0}1", "n": 1, "meta": { "k\u{0}": ["a\u{0}b", "c"] }, "ok": "x" });
        assert_eq!(
            scrub_nul(value),
            json!({ "id": "evt\u{FFFD}1", "n": 1, "meta": { "k\u{FFFD}": ["a\u{FFFD}b", "c"] }, "ok": "x" })
        );
        assert_eq!(scrub_nul(json!({ "a": "b" })), json!({ "a": "b" }));
    }

    #[test]
    fn the_escape_is_found_in_either_case_and_not_elsewhere() {
        assert!(may_hold_nul(br#"{"a":"x\u0000"}"#));
        assert!(may_hold_nul(br#"{"a":"x\U0000"}"#));
        assert!(!may_hold_nul(br#"{"a":"x\u0001","b":"0000"}"#));
    }
}
