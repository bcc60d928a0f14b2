//! Wall-clock helpers shared by the crates.

use serde::de::{Error as _, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::time::{SystemTime, UNIX_EPOCH};

/// A point in time in Unix milliseconds. In JSON (the API) it is RFC 3339
/// text; in storage a number, formatted only when someone reads it (records
/// carry several, and formatting each was ~1 % of a small run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Now.
    pub fn now() -> Timestamp {
        Timestamp(now_millis())
    }

    /// Unix milliseconds.
    pub fn millis(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&millis_to_rfc3339(self.0))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&millis_to_rfc3339(self.0))
        } else {
            s.serialize_u64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        struct Either;
        impl Visitor<'_> for Either {
            type Value = Timestamp;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an RFC 3339 time or Unix milliseconds")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Timestamp, E> {
                Ok(Timestamp(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Timestamp, E> {
                parse_rfc3339(v)
                    .map(Timestamp)
                    .ok_or_else(|| E::custom(format!("`{v}` is not an RFC 3339 time")))
            }
        }
        if d.is_human_readable() {
            d.deserialize_any(Either)
        } else {
            u64::deserialize(d)
                .map(Timestamp)
                .map_err(|e| D::Error::custom(format!("a time: {e}")))
        }
    }
}

/// The instant `after` from now; a duration too long for the clock gives a
/// day short of a hundred years (it never panics, unlike `Instant + Duration`).
pub fn deadline_after(after: std::time::Duration) -> std::time::Instant {
    let now = std::time::Instant::now();
    now.checked_add(after)
        .or_else(|| now.checked_add(std::time::Duration::from_secs(36_499 * 86_400)))
        .unwrap_or(now)
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The current time as RFC 3339 in UTC with millisecond precision.
pub fn now_rfc3339() -> String {
    millis_to_rfc3339(now_millis())
}

/// Formats Unix milliseconds as RFC 3339 UTC (`2026-11-22T10:00:00.000Z`).
pub fn millis_to_rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let millis = ms % 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    // Written digit by digit: records format several times per run, and
    // `format!` costs ten times as much.
    let mut out = [0u8; 24];
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (0..width).rev() {
            out[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y.clamp(0, 9999) as u64);
    put(5, 2, m as u64);
    put(8, 2, d as u64);
    put(11, 2, rem / 3600);
    put(14, 2, (rem % 3600) / 60);
    put(17, 2, rem % 60);
    put(20, 3, millis);
    for (at, c) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (23, b'Z'),
    ] {
        out[at] = c;
    }
    // Every byte is an ASCII digit or separator.
    std::str::from_utf8(&out)
        .map(str::to_owned)
        .unwrap_or_default()
}

/// Parses RFC 3339 (`2026-11-22T10:00:00Z`, fractional seconds and offsets allowed) to Unix milliseconds.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let text = s.get(r)?;
        // `parse` would take a sign; a field is digits only.
        if !text.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        text.parse().ok()
    };
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    // Every slice below is taken with `get`: a multi-byte character where a
    // digit belongs makes the text invalid, never a panic.
    let mut rest = s.get(19..)?;
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(frac.len());
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<3}", frac.get(..digits.min(3))?);
        millis = padded.parse().ok()?;
        rest = frac.get(digits..)?;
    }
    let offset_secs = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let hours: i64 = rest.get(1..3)?.parse().ok()?;
            let minutes: i64 = rest.get(4..6)?.parse().ok()?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let sign = if *sign == b'-' { -1 } else { 1 };
            sign * (hours * 3600 + minutes * 60)
        }
        _ => return None,
    };
    if d > days_in_month(y, mo) {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset_secs;
    u64::try_from(secs * 1000 + millis).ok()
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's civil calendar algorithms.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for ms in [0u64, 951_782_400_000, 1_795_000_000_123, 4_102_444_800_000] {
            assert_eq!(parse_rfc3339(&millis_to_rfc3339(ms)), Some(ms));
        }
        assert_eq!(millis_to_rfc3339(0), "1970-01-01T00:00:00.000Z");
        // Cross-checked with Python's datetime.
        assert_eq!(
            millis_to_rfc3339(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            millis_to_rfc3339(1_795_000_000_123),
            "2026-11-18T11:06:40.123Z"
        );
        assert_eq!(
            millis_to_rfc3339(4_102_444_800_999),
            "2100-01-01T00:00:00.999Z"
        );
        assert_eq!(
            parse_rfc3339("2026-11-22T10:00:00+08:00"),
            parse_rfc3339("2026-11-22T02:00:00Z")
        );
        assert_eq!(
            parse_rfc3339("2026-11-22T10:00:00.5Z").map(|m| m % 1000),
            Some(500)
        );
        let t = Timestamp(1_795_000_000_123);
        let text = serde_json::to_value(t).expect("json");
        assert_eq!(text, serde_json::json!("2026-11-18T11:06:40.123Z"));
        assert_eq!(serde_json::from_value::<Timestamp>(text).expect("back"), t);
        assert_eq!(
            serde_json::from_value::<Timestamp>(serde_json::json!(5)).expect("ms"),
            Timestamp(5)
        );
        assert!(serde_json::from_value::<Timestamp>(serde_json::json!("soon")).is_err());
        for bad in [
            "",
            "2026-11-22",
            "2026-13-01T00:00:00Z",
            "2026-11-22T10:00:00",
            "2026-11-22T10:00:00+0800",
            "2026-02-30T10:00:00Z",
            "2026-11-22T10:00:00+24:00",
            "+026-11-22T10:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    /// A multi-byte character at any position is an invalid time, never a
    /// panic (it was: fixed-offset slices split the character).
    #[test]
    fn multi_byte_characters_anywhere_are_invalid_not_a_panic() {
        let good = "2026-11-22T10:00:00.123+08:00";
        for at in 0..=good.len() {
            for ch in ["é", "时", "🙂"] {
                let mut text = good.to_string();
                text.insert_str(at, ch);
                assert_eq!(parse_rfc3339(&text), None, "{text}");
                let mut replaced = good.to_string();
                if at < good.len() {
                    replaced.replace_range(at..at + 1, ch);
                    assert_eq!(parse_rfc3339(&replaced), None, "{replaced}");
                }
            }
        }
        assert!(parse_rfc3339(good).is_some());
        assert_eq!(parse_rfc3339("2026-11-22T10:00:00Z时"), None);
        assert_eq!(parse_rfc3339("2026-11-22T10:00:00.时"), None);
        // Six bytes where `+hh:mm` belongs, split inside a character.
        assert_eq!(parse_rfc3339("2026-11-22T10:00:00+时00"), None);
        assert_eq!(parse_rfc3339("2026-11-22T10:00:00+0é:0"), None);
        assert_eq!(parse_rfc3339("2026-11-22T10:00:00+08:é"), None);
    }
}
