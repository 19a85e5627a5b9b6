//! A duration written the way Kubernetes writes them (`72h`, `30m`, `1h30m`).
//!
//! The text is kept as the user wrote it, so a spec round-trips byte for byte
//! (approval digests and GitOps diffs depend on that); [`GoDuration::parse`]
//! turns it into a [`std::time::Duration`] when Berth needs the value.

use std::{borrow::Cow, fmt, str::FromStr};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// The CEL rule the apiserver applies to every duration field, so a malformed
/// duration is refused at `kubectl apply`, webhook or not. Days are not a Go
/// duration unit: a week is `168h`.
const WELL_FORMED_RULE: &str = "self.matches('^([0-9]+(ns|us|ms|s|m|h))+$')";
const WELL_FORMED_MESSAGE: &str =
    "must be a duration of whole numbers with units h, m, s, ms, us or ns, such as 72h or 1h30m";

/// CEL that holds when the duration `shorter` is at most `longer` (both CEL paths).
/// It only compares well-formed durations, so a malformed one is reported once,
/// by its own rule, instead of also as a conversion error here.
pub(crate) fn cel_at_most(shorter: &str, longer: &str) -> String {
    let pattern = WELL_FORMED_RULE.trim_start_matches("self");
    format!("!{shorter}{pattern} || !{longer}{pattern} || duration({shorter}) <= duration({longer})")
}

/// A duration such as `72h` or `1h30m` (Go `time.ParseDuration` syntax, without signs or fractions).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GoDuration(String);

/// Why a duration could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{text:?} {WELL_FORMED_MESSAGE}")]
pub struct InvalidDuration {
    text: String,
}

impl GoDuration {
    /// The duration as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value of the duration.
    pub fn parse(&self) -> Result<std::time::Duration, InvalidDuration> {
        parse_go_duration(&self.0).ok_or_else(|| InvalidDuration { text: self.0.clone() })
    }
}

impl FromStr for GoDuration {
    type Err = InvalidDuration;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_go_duration(text).ok_or_else(|| InvalidDuration { text: text.to_owned() })?;
        Ok(Self(text.to_owned()))
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl JsonSchema for GoDuration {
    fn schema_name() -> Cow<'static, str> {
        "GoDuration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "maxLength": 32,
            "x-kubernetes-validations": [{
                "rule": WELL_FORMED_RULE,
                "message": WELL_FORMED_MESSAGE,
            }],
        })
    }
}

/// Parses exactly the language of [`WELL_FORMED_RULE`]: one or more
/// `<digits><unit>` pairs. Returns `None` on anything else, including overflow.
fn parse_go_duration(text: &str) -> Option<std::time::Duration> {
    const UNITS: [(&str, u128); 6] = [
        ("ns", 1),
        ("us", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
    ];
    if text.is_empty() {
        return None;
    }
    let mut rest = text;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let amount: u128 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        // Longest unit first so "ms" is not read as "m" followed by "s".
        let (unit, nanos_per_unit) =
            UNITS.iter().filter(|(unit, _)| rest.starts_with(unit)).max_by_key(|(unit, _)| unit.len())?;
        rest = &rest[unit.len()..];
        total_nanos = total_nanos.checked_add(amount.checked_mul(*nanos_per_unit)?)?;
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000).ok()?;
    let nanos = u32::try_from(total_nanos % 1_000_000_000).ok()?;
    Some(std::time::Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn parses_single_and_compound_durations() {
        let cases = [
            ("72h", Duration::from_secs(72 * 3600)),
            ("30m", Duration::from_secs(1800)),
            ("1h30m", Duration::from_secs(5400)),
            ("90s", Duration::from_secs(90)),
            ("250ms", Duration::from_millis(250)),
            ("1m1ms", Duration::from_millis(60_001)),
            ("7us", Duration::from_micros(7)),
            ("0s", Duration::ZERO),
        ];
        for (text, expected) in cases {
            let parsed: GoDuration = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(parsed.parse(), Ok(expected), "{text}");
            assert_eq!(parsed.as_str(), text, "text is kept as written");
        }
    }

    #[test]
    fn rejects_malformed_durations_with_the_text_in_the_error() {
        for text in ["", "3d", "h", "10", "-5m", "1.5h", "5 m", "1h 30m", "m5", "99999999999999999999999h"] {
            let err = text.parse::<GoDuration>().expect_err(text);
            assert!(err.to_string().contains(&format!("{text:?}")), "{err}");
        }
    }

    #[test]
    fn schema_carries_the_cel_rule_and_a_length_bound() {
        let schema = schemars::schema_for!(GoDuration);
        let value = serde_json::to_value(&schema).expect("schema serializes");
        assert_eq!(value["x-kubernetes-validations"][0]["rule"], WELL_FORMED_RULE);
        assert_eq!(value["maxLength"], 32);
    }

    #[test]
    fn serializes_as_the_original_string() {
        let parsed: GoDuration = serde_json::from_str("\"1h30m\"").expect("valid duration");
        assert_eq!(serde_json::to_string(&parsed).expect("serializes"), "\"1h30m\"");
    }
}
