//! The JSON Schemas of the file formats, generated from their serde types:
//! workflows from [`crate::def`], test files from [`crate::testfile`].
//!
//! Kinds written as a mapping with a tag field (a node's `type`, a verify
//! block's `preset`) are discriminated by that field: the schema lists the
//! tag's values once, and applies a kind's own schema (its fields, and no
//! others) only when the tag names that kind (`if`/`then`). An editor then
//! reports a misspelled field of a `request` node at that field ("property
//! `on_eror` is not allowed"), and an unknown kind at the tag, instead of
//! "not valid under any of the given schemas" on the whole node.

use schemars::generate::SchemaSettings;
use schemars::transform::RecursiveTransform;
use schemars::{Schema, SchemaGenerator};
use serde_json::{json, Value};

#[cfg(test)]
mod tests;

/// The JSON Schema (draft 2020-12) of a workflow file, pretty-printed.
pub fn workflow_schema() -> String {
    pretty(&generator().into_root_schema_for::<crate::def::WorkflowDef>())
}

/// The JSON Schema (draft 2020-12) of a test file (`<id>.test.yaml`), pretty-printed.
pub fn test_schema() -> String {
    pretty(&generator().into_root_schema_for::<crate::testfile::TestFileDef>())
}

fn generator() -> SchemaGenerator {
    SchemaSettings::draft2020_12()
        .with(|s| {
            s.transforms.push(Box::new(RecursiveTransform(
                without_null as fn(&mut Schema),
            )));
        })
        .into_generator()
}

fn pretty(schema: &Schema) -> String {
    let mut text =
        serde_json::to_string_pretty(schema).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

/// Discriminates the node kinds by `type` (`#[schemars(transform)]` of
/// [`crate::def::NodeDef`]).
pub fn by_type(schema: &mut Schema) {
    discriminate(schema, "type", "The node kind.");
}

/// Discriminates the verify presets by `preset` (`#[schemars(transform)]`
/// of [`crate::def::VerifyDef`]).
pub fn by_preset(schema: &mut Schema) {
    discriminate(schema, "preset", "The signature scheme.");
}

/// Turns `oneOf: [kind…]`, each kind an object schema whose `tag` property
/// is a `const`, into an object that requires `tag` (one of the kinds'
/// names) and, through `allOf`, applies `if tag is X then X's schema`.
/// Leaves the schema alone when it does not have that shape.
fn discriminate(schema: &mut Schema, tag: &str, what: &str) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    let Some(Value::Array(kinds)) = object.get("oneOf") else {
        return;
    };
    let const_pointer = format!("/properties/{tag}/const");
    let mut names = Vec::with_capacity(kinds.len());
    let mut descriptions = Vec::with_capacity(kinds.len());
    let mut rules = Vec::with_capacity(kinds.len());
    for kind in kinds {
        let Some(name) = kind.pointer(&const_pointer).and_then(Value::as_str) else {
            return;
        };
        names.push(Value::from(name));
        descriptions.push(kind.get("description").cloned().unwrap_or_default());
        rules.push(json!({
            "if": { "properties": { tag: { "const": name } }, "required": [tag] },
            "then": kind,
        }));
    }
    object.remove("oneOf");
    object.insert("type".into(), json!("object"));
    object.insert("required".into(), json!([tag]));
    object.insert(
        "properties".into(),
        json!({ tag: {
            "description": what,
            "enum": names,
            // Read by editors (VS Code's JSON and YAML support) next to each value.
            "enumDescriptions": descriptions,
        }}),
    );
    object.insert("allOf".into(), Value::Array(rules));
}

/// An optional block (`retry: Option<RetryDef>`) comes out as
/// `anyOf: [RetryDef, null]`, and a misspelled field inside it as "not valid
/// under any of the schemas listed in anyOf" on the whole block. Nobody needs
/// to write `retry: null` (leaving the field out says the same), so the
/// schema keeps the block's own schema alone.
fn without_null(schema: &mut Schema) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    let Some(Value::Array(alternatives)) = object.get("anyOf") else {
        return;
    };
    let null = json!({ "type": "null" });
    let kept = match alternatives.as_slice() {
        [kept, other] | [other, kept] if *other == null && *kept != null => kept.clone(),
        _ => return,
    };
    let Value::Object(kept) = kept else {
        return;
    };
    object.remove("anyOf");
    for (key, value) in kept {
        object.entry(key).or_insert(value);
    }
}

/// A value written as one item or a list of them (`#[serde(untagged)]`,
/// `anyOf: [list, item]`): the schema picks the form by the value's JSON
/// type (`if` array `then` items `else` the item), so that a misspelled
/// field is reported at that field. Leaves other shapes alone.
pub fn one_or_list(schema: &mut Schema) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    let Some(Value::Array(alternatives)) = object.get("anyOf") else {
        return;
    };
    let is_list = |v: &Value| v.get("type") == Some(&json!("array"));
    let (list, item) = match alternatives.as_slice() {
        [list, item] | [item, list] if is_list(list) && !is_list(item) => {
            (list.clone(), item.clone())
        }
        _ => return,
    };
    object.remove("anyOf");
    object.insert("if".into(), json!({ "type": "array" }));
    object.insert("then".into(), list);
    object.insert("else".into(), item);
}

/// An expression field (`if`, `expression`, `over`): text, or a number or
/// boolean that the loader reads as that expression (`expression: 1`).
pub fn expression(_: &mut SchemaGenerator) -> Schema {
    let schema = json!({
        "type": ["string", "number", "boolean"],
        "description": "An expression (no braces); a number or boolean is that expression."
    });
    Schema::try_from(schema).unwrap_or_default()
}
