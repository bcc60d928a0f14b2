//! hookflow's own words for what serde finds wrong while reading a file:
//! YAML words (list, mapping, text) instead of Rust's (sequence, map,
//! `struct TriggerDef`, `u16`), and how to fix it.

use crate::suggest::{close_names, did_you_mean};
use serde::de::{Expected, Unexpected};

/// A value of the wrong kind.
pub(super) fn invalid_type(unexp: Unexpected<'_>, exp: &dyn Expected) -> String {
    let expected = expected(&exp.to_string());
    let hint = match (expected.as_str(), &unexp) {
        (
            "a string",
            Unexpected::Signed(_)
            | Unexpected::Unsigned(_)
            | Unexpected::Float(_)
            | Unexpected::Bool(_),
        ) => "; put it in quotes to write it as text",
        ("a string", Unexpected::Seq | Unexpected::Map) => {
            "; check the indentation, or put the value in quotes"
        }
        ("a list", _) => "; write one `- item` per line, or `[a, b]`",
        ("a mapping", _) => "; write it as `name: value` fields",
        _ => "",
    };
    format!(
        "invalid type: expected {expected}, found {}{hint}",
        found(&unexp)
    )
}

/// A value of the right kind that is not accepted (a number out of range…).
pub(super) fn invalid_value(unexp: Unexpected<'_>, exp: &dyn Expected) -> String {
    format!(
        "invalid value: expected {}, found {}",
        expected(&exp.to_string()),
        found(&unexp)
    )
}

/// A name that is not one of the allowed ones (`mode: later`).
pub(super) fn unknown_value(value: &str, allowed: &[&str]) -> String {
    let close = close_names(value, allowed.iter().copied());
    if close.is_empty() {
        format!(
            "unknown value `{value}`; expected one of: {}",
            allowed.join(", ")
        )
    } else {
        format!("unknown value `{value}`{}", did_you_mean(&close, ""))
    }
}

/// A mapping key the format does not have.
pub(super) fn unknown_field(field: &str, allowed: &[&str]) -> String {
    let close = close_names(field, allowed.iter().copied());
    if close.is_empty() {
        format!(
            "unknown field `{field}`; the fields here are: {}",
            allowed.join(", ")
        )
    } else {
        format!("unknown field `{field}`{}", did_you_mean(&close, ""))
    }
}

/// What serde's `Expected` says, in the words of a YAML author.
pub(super) fn expected(rust: &str) -> String {
    let words = match rust {
        "a sequence" => "a list",
        "a map" => "a mapping",
        "a boolean" => "`true` or `false`",
        "u8" => "a whole number from 0 to 255",
        "u16" => "a whole number from 0 to 65535",
        "u32" => "a whole number from 0 to 4294967295",
        "u64" | "u128" | "usize" => "a whole number (0 or more)",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "a character" | "char" => "a single character",
        "unit" => "nothing",
        "option" => "a value",
        _ if rust.starts_with("struct ") || rust.starts_with("map ") => "a mapping",
        _ if rust.starts_with("tuple") || rust.starts_with("a sequence") => "a list",
        _ if rust.starts_with("enum ") => "one of the names this field allows",
        other => other,
    };
    words.to_string()
}

/// What was found instead.
fn found(unexp: &Unexpected<'_>) -> String {
    match unexp {
        Unexpected::Bool(b) => format!("`{b}`"),
        Unexpected::Unsigned(n) => format!("the number `{n}`"),
        Unexpected::Signed(n) => format!("the number `{n}`"),
        Unexpected::Float(n) => format!("the number `{n}`"),
        Unexpected::Char(c) => format!("`{c}`"),
        Unexpected::Str(s) => format!("the text `{s}`"),
        Unexpected::Bytes(_) => "bytes".into(),
        Unexpected::Unit => "nothing (an empty value)".into(),
        Unexpected::Seq => "a list".into(),
        Unexpected::Map => "a mapping".into(),
        Unexpected::Option | Unexpected::NewtypeStruct => "a value".into(),
        Unexpected::Enum
        | Unexpected::UnitVariant
        | Unexpected::NewtypeVariant
        | Unexpected::TupleVariant
        | Unexpected::StructVariant => "a name".into(),
        Unexpected::Other(other) => other.to_string(),
    }
}
