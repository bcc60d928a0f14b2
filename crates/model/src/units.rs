//! Durations (`90s`, `5m`, `1h30m`, `500ms`) and sizes (`1MiB`, `512KB`) as
//! written in workflow files.

use schemars::JsonSchema;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// A duration written with units: `ms`, `s`, `m`, `h`, `d`, combinable (`1h30m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dur(pub Duration);

/// A size in bytes written with a unit: `B`, `KB`, `KiB`, `MB`, `MiB` (or a plain number of bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Size(pub u64);

/// The longest duration a file or a flag may write: 100 years. Longer ones
/// are an error (they would overflow the clock's arithmetic).
pub const MAX_DURATION: Duration = Duration::from_secs(36_500 * 86_400);

/// Parses a duration such as `90s`, `10m`, `25h`, `500ms`, `7d` or `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration; write e.g. 30s, 5m or 1h".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "invalid duration `{text}`; write e.g. 30s, 5m, 1h30m or 500ms"
            ));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("number too large in duration `{text}`"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3600)),
            "d" => Duration::from_secs(number.saturating_mul(86_400)),
            "" => return Err(format!("duration `{text}` needs a unit (ms, s, m, h or d)")),
            other => {
                return Err(format!(
                    "unknown unit `{other}` in duration `{text}` (use ms, s, m, h or d)"
                ))
            }
        };
        total = total.saturating_add(part);
    }
    if total > MAX_DURATION {
        return Err(format!(
            "duration `{text}` is too long (at most 36500d, 100 years)"
        ));
    }
    Ok(total)
}

/// Formats a duration the way it is written in files (`1h30m`, `500ms`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let mut secs = d.as_secs();
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

/// Parses a size such as `1MiB`, `512KB`, `100B` or `2048`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let s = text.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits == 0 {
        return Err(format!(
            "invalid size `{text}`; write e.g. 1MiB, 512KB or 100B"
        ));
    }
    let number: u64 = s[..digits]
        .parse()
        .map_err(|_| format!("number too large in size `{text}`"))?;
    let factor: u64 = match s[digits..].trim() {
        "" | "B" => 1,
        "KB" => 1000,
        "KiB" => 1024,
        "MB" => 1_000_000,
        "MiB" => 1024 * 1024,
        other => {
            return Err(format!(
                "unknown unit `{other}` in size `{text}` (use B, KB, KiB, MB or MiB)"
            ))
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("size `{text}` is too large"))
}

/// A bare number given as a duration: which unit to add (zero, which no
/// duration field takes, is given a positive example).
fn unitless(v: impl std::fmt::Display) -> String {
    let text = v.to_string();
    match text.as_str() {
        "0" | "-0" => {
            format!("duration `{text}` needs a unit and must be longer than zero, e.g. 30s")
        }
        _ if text.starts_with('-') => {
            format!("duration `{text}` cannot be negative; give a unit too, e.g. 30s")
        }
        _ => format!("duration `{text}` needs a unit, e.g. {text}s"),
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as 30s, 5m or 1h30m")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                parse_duration(v).map(Dur).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
                Err(E::custom(unitless(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dur, E> {
                Err(E::custom(unitless(v)))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(self.0))
    }
}

impl JsonSchema for Dur {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^([0-9]+(ms|s|m|h|d))+$",
            "description": "A duration such as 500ms, 30s, 5m, 25h, 7d or 1h30m."
        })
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as 1MiB, 512KB or 100B")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                parse_size(v).map(Size).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Size {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Size".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": "^[0-9]+ ?(B|KB|KiB|MB|MiB)?$" }
            ],
            "description": "A size in bytes, or with a unit: B, KB, KiB, MB, MiB."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("90s", 90_000),
            ("10m", 600_000),
            ("25h", 90_000_000),
            ("500ms", 500),
            ("7d", 604_800_000),
            ("1h30m", 5_400_000),
        ];
        for (text, ms) in ok {
            assert_eq!(
                parse_duration(text).map(|d| d.as_millis()),
                Ok(ms),
                "{text}"
            );
            assert_eq!(
                parse_duration(&format_duration(Duration::from_millis(ms as u64)))
                    .map(|d| d.as_millis()),
                Ok(ms)
            );
        }
        for bad in ["", "10", "s", "5x", "1.5s", "-3s", "3时", "时3s"] {
            assert!(parse_duration(bad).is_err(), "{bad} should fail");
        }
        // Long enough to overflow `Instant + Duration`: an error, not a panic later.
        assert!(parse_duration("36500d").is_ok());
        for long in ["36501d", "99999999999999999d", "18446744073709551615s"] {
            let error = parse_duration(long).expect_err(long);
            assert!(error.contains("too long"), "{error}");
        }
    }

    #[test]
    fn a_bare_number_is_told_which_unit_to_add() {
        assert_eq!(unitless(30), "duration `30` needs a unit, e.g. 30s");
        // Zero is no duration anywhere: no `0s` to be refused next.
        assert!(!unitless(0).contains("e.g. 0s"), "{}", unitless(0));
        assert!(unitless(-5).contains("cannot be negative"));
    }

    #[test]
    fn sizes() {
        let ok = [
            ("1MiB", 1_048_576),
            ("512KB", 512_000),
            ("100B", 100),
            ("2048", 2048),
            ("3KiB", 3072),
            ("2MB", 2_000_000),
        ];
        for (text, n) in ok {
            assert_eq!(parse_size(text), Ok(n), "{text}");
        }
        for bad in ["", "MiB", "1GiB", "1.5MiB", "99999999999999999999B"] {
            assert!(parse_size(bad).is_err(), "{bad} should fail");
        }
    }
}
