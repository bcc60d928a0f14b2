//! NocoBase's "parse" button (SPEC §6 `hookflow sample`): from a sample
//! request to the parse entries that extract every leaf of it.
//!
//! Headers give one entry each, as given. Query and body leaves give dotted
//! paths (`b.c`); leaves under arrays give one JSONPath entry each
//! (`$.to_users[*].mobile`, a list at run time). Every entry gets an alias
//! (the default rule, tidied and made unique across the three parts) and the
//! type seen in the sample. A JSON body keeps the sample's key order.

use crate::{parse_query, BodyKind, ParseError, TriggerRequest};
use hookflow_model::compile::default_alias;
use hookflow_model::request::REDACTED;
use hookflow_model::yaml::write::{to_yaml, FlowMap, WriteError};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Serialize;
use serde_json::Value as Json;
use std::collections::HashSet;
use std::fmt;

/// One parse entry the sample suggests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SampleEntry {
    /// The key: a header name, a dotted path or a JSONPath.
    pub key: String,
    /// The variable name (`vars.<alias>`), unique across the parts.
    pub alias: String,
    /// The type seen in the sample (`string`, `integer`, `number`,
    /// `boolean`, `object` or `array` for empty ones); none for `null`s or
    /// a leaf seen with different types.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub value_type: Option<&'static str>,
}

/// The entries of a sample request, by part.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Sampled {
    /// Header entries.
    pub headers: Vec<SampleEntry>,
    /// Query entries.
    pub query: Vec<SampleEntry>,
    /// Body entries.
    pub body: Vec<SampleEntry>,
}

/// A sample request: headers as given, the raw query string, the body.
pub struct SampleRequest<'a> {
    /// Headers, `(name, value)`.
    pub headers: &'a [(String, String)],
    /// The query string (without `?`).
    pub query: &'a str,
    /// How the body is read; `None` for no body.
    pub body_kind: Option<BodyKind>,
    /// The body's bytes.
    pub body: &'a [u8],
}

/// The parse entries that extract every leaf of `request`.
pub fn sample(request: &SampleRequest<'_>) -> Result<Sampled, ParseError> {
    let body = body_node(request.body_kind, request.body)?;
    let headers: Vec<&str> = request.headers.iter().map(|(n, _)| n.as_str()).collect();
    Ok(sample_parts(
        &headers,
        &Node::from_json(&parse_query(request.query)),
        body.as_ref(),
    ))
}

/// Headers a recorded request carries that no workflow parses: transport,
/// content negotiation, credentials.
const TRANSPORT_HEADERS: &[&str] = &[
    "accept",
    "accept-encoding",
    "accept-language",
    "authorization",
    "connection",
    "content-length",
    "content-type",
    "cookie",
    "expect",
    "host",
    "keep-alive",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
];

/// The parse entries of a recorded run's request (`hookflow sample
/// --execution`, the run page's "parse entries"): its headers but the
/// transport ones and those recorded `[redacted]`, its query, and its body
/// (a JSON body re-read from the raw bytes, so that its key order is kept).
pub fn sample_recorded(trigger: &TriggerRequest) -> Sampled {
    let headers: Vec<&str> = trigger
        .headers
        .iter()
        .filter(|(n, v)| *v != REDACTED && !TRANSPORT_HEADERS.contains(n))
        .map(|(n, _)| n)
        .collect();
    let kind = crate::body_kind(trigger.header("content-type").as_deref());
    let body = match kind {
        Some(BodyKind::Json) => body_node(kind, trigger.raw_body.as_bytes())
            .ok()
            .flatten()
            .unwrap_or_else(|| Node::from_json(&trigger.body())),
        _ => Node::from_json(&trigger.body()),
    };
    sample_parts(&headers, &Node::from_json(&trigger.query), Some(&body))
}

/// A body as a tree; `None` for no body or a text body (no leaves).
fn body_node(kind: Option<BodyKind>, body: &[u8]) -> Result<Option<Node>, ParseError> {
    Ok(match kind {
        _ if body.is_empty() => None,
        Some(BodyKind::Json) => {
            Some(
                serde_json::from_slice(body).map_err(|e| ParseError::MalformedJson {
                    line: e.line(),
                    column: e.column(),
                    message: e.to_string(),
                })?,
            )
        }
        Some(kind @ BodyKind::Form) => Some(Node::from_json(&crate::body::parse_as(kind, body)?)),
        // A text or XML body is one string: templates read `trigger.body`.
        _ => None,
    })
}

fn sample_parts(headers: &[&str], query: &Node, body: Option<&Node>) -> Sampled {
    let mut aliases = Aliases::default();
    let headers = headers
        .iter()
        .map(|name| SampleEntry {
            key: name.to_string(),
            alias: aliases.unique(&default_alias(name)),
            value_type: Some("string"),
        })
        .collect();
    let query = leaves(query, &mut aliases);
    let body = body.map(|b| leaves(b, &mut aliases)).unwrap_or_default();
    Sampled {
        headers,
        query,
        body,
    }
}

/// The parts of a `parse:` block, entries in flow style (`- {key: …}`).
#[derive(Serialize)]
pub struct ParseBlock<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    headers: Vec<FlowMap<&'a SampleEntry>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    query: Vec<FlowMap<&'a SampleEntry>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    body: Vec<FlowMap<&'a SampleEntry>>,
}

impl Sampled {
    /// The `parse:` block's contents; `None` when there is no entry.
    pub fn block(&self) -> Option<ParseBlock<'_>> {
        fn flow(entries: &[SampleEntry]) -> Vec<FlowMap<&SampleEntry>> {
            entries.iter().map(FlowMap).collect()
        }
        let block = ParseBlock {
            headers: flow(&self.headers),
            query: flow(&self.query),
            body: flow(&self.body),
        };
        (!(block.headers.is_empty() && block.query.is_empty() && block.body.is_empty()))
            .then_some(block)
    }

    /// The `parse:` block as YAML, ready to paste under `trigger:` (a
    /// comment saying so when there is nothing to extract).
    pub fn to_yaml(&self) -> Result<String, WriteError> {
        #[derive(Serialize)]
        struct Doc<'a> {
            parse: ParseBlock<'a>,
        }
        match self.block() {
            Some(parse) => to_yaml(&Doc { parse }),
            None => Ok(
                "# The sample has nothing to extract (no headers, no query, no JSON or \
                        form body leaves);\n# templates can still read trigger.body.\n"
                    .to_string(),
            ),
        }
    }
}

/// A decoded sample that keeps the order of object members as written.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A string, number, boolean or null.
    Scalar(Json),
    /// An array.
    List(Vec<Node>),
    /// An object, members in the order written.
    Map(Vec<(String, Node)>),
}

impl Node {
    /// From a decoded value (members in the value's own order).
    pub fn from_json(value: &Json) -> Node {
        match value {
            Json::Array(items) => Node::List(items.iter().map(Node::from_json).collect()),
            Json::Object(m) => Node::Map(
                m.iter()
                    .map(|(k, v)| (k.clone(), Node::from_json(v)))
                    .collect(),
            ),
            scalar => Node::Scalar(scalar.clone()),
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Scalar(Json::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Scalar(Json::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Scalar(Json::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Scalar(Json::from(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Scalar(Json::String(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Scalar(Json::String(v)))
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Scalar(Json::Null))
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Scalar(Json::Null))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut members: Vec<(String, Node)> = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, Node>()? {
            // A repeated member: the last one wins, as in serde_json.
            members.retain(|(k, _)| *k != key);
            members.push((key, value));
        }
        Ok(Node::Map(members))
    }
}

/// One step to a leaf.
#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Each,
}

/// Aliases handed out so far.
#[derive(Default)]
struct Aliases(HashSet<String>);

impl Aliases {
    /// `wanted` tidied into a valid variable name, made unique with `_2`, `_3`….
    fn unique(&mut self, wanted: &str) -> String {
        let mut base = String::with_capacity(wanted.len());
        for c in wanted.chars() {
            if c == '_' && (base.is_empty() || base.ends_with('_')) {
                continue;
            }
            base.push(c);
        }
        while base.ends_with('_') {
            base.pop();
        }
        if base.is_empty() {
            base.push_str("field");
        } else if base.starts_with(|c: char| c.is_ascii_digit()) {
            base.insert(0, '_');
        }
        let mut alias = base.clone();
        let mut n = 2;
        while !self.0.insert(alias.clone()) {
            alias = format!("{base}_{n}");
            n += 1;
        }
        alias
    }
}

/// `objectId` → `object_Id`: a word boundary of camelCase becomes `_`
/// (the default rule then lower-cases it).
fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    let mut previous: Option<char> = None;
    for c in name.chars() {
        if c.is_ascii_uppercase()
            && previous.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit())
        {
            out.push('_');
        }
        out.push(c);
        previous = Some(c);
    }
    out
}

/// The entries of every leaf of `root`, in order of first appearance.
fn leaves(root: &Node, aliases: &mut Aliases) -> Vec<SampleEntry> {
    let mut walk = Walk::default();
    walk.node(root, &mut Vec::new());
    let Walk {
        found,
        keys,
        containers,
    } = walk;
    found
        .into_iter()
        .zip(keys)
        .map(|((segs, seen), key)| {
            let name: Vec<&str> = segs
                .iter()
                .filter_map(|s| match s {
                    Seg::Key(k) => Some(k.as_str()),
                    Seg::Each => None,
                })
                .collect();
            // A path that holds a mapping or list in another element of an
            // array has no one type.
            let value_type = match seen {
                Seen::One(t) if !containers.contains(&key) => t,
                _ => None,
            };
            SampleEntry {
                key,
                alias: aliases.unique(&default_alias(&snake(&name.join("_")))),
                value_type,
            }
        })
        .collect()
}

/// The types a leaf's path was seen with, over the elements of the arrays
/// on its way.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Seen {
    /// One type (`None`: a value with no type of its own, such as null).
    One(Option<&'static str>),
    /// Values that no one type reads: the entry gets none.
    Mixed,
}

impl Seen {
    fn and(self, other: Option<&'static str>) -> Seen {
        match (self, other) {
            (Seen::One(a), b) if a == b => self,
            // Every integer is a number.
            (Seen::One(Some("integer")), Some("number"))
            | (Seen::One(Some("number")), Some("integer")) => Seen::One(Some("number")),
            _ => Seen::Mixed,
        }
    }
}

/// What walking a sample finds: its leaves in order, their keys, and the
/// keys of paths that held a mapping or list with members.
#[derive(Default)]
struct Walk {
    found: Vec<(Vec<Seg>, Seen)>,
    keys: Vec<String>,
    containers: std::collections::HashSet<String>,
}

impl Walk {
    fn node(&mut self, node: &Node, segs: &mut Vec<Seg>) {
        let leaf_type = match node {
            Node::Map(members) if !members.is_empty() => {
                self.container(segs);
                for (k, v) in members {
                    segs.push(Seg::Key(k.clone()));
                    self.node(v, segs);
                    segs.pop();
                }
                return;
            }
            Node::List(items) if !items.is_empty() => {
                self.container(segs);
                segs.push(Seg::Each);
                for item in items {
                    self.node(item, segs);
                }
                segs.pop();
                return;
            }
            Node::Map(_) => Some("object"),
            Node::List(_) => Some("array"),
            Node::Scalar(v) => type_of(v),
        };
        // The root itself (a scalar body) is no entry.
        if segs.is_empty() {
            return;
        }
        let key = key_of(segs);
        match self.keys.iter().position(|k| *k == key) {
            // Seen under another element of an array: the types must agree.
            Some(i) => self.found[i].1 = self.found[i].1.and(leaf_type),
            None => {
                self.found.push((segs.clone(), Seen::One(leaf_type)));
                self.keys.push(key);
            }
        }
    }

    /// Notes a path that holds members (only under an array can the same
    /// path also be a leaf).
    fn container(&mut self, segs: &[Seg]) {
        if segs.contains(&Seg::Each) {
            self.containers.insert(key_of(segs));
        }
    }
}

fn type_of(value: &Json) -> Option<&'static str> {
    match value {
        Json::String(_) => Some("string"),
        Json::Number(n) if n.is_i64() || n.is_u64() => Some("integer"),
        Json::Number(_) => Some("number"),
        Json::Bool(_) => Some("boolean"),
        _ => None,
    }
}

/// A dotted path when every step can be written so, otherwise a JSONPath.
fn key_of(segs: &[Seg]) -> String {
    let dotted_ok = segs.iter().enumerate().all(|(i, s)| match s {
        Seg::Key(k) => {
            let awkward = k.is_empty()
                || k.contains(['.', '[', ']'])
                || (i == 0 && k.starts_with('$'))
                || k.trim() != k;
            !awkward
        }
        Seg::Each => false,
    });
    if dotted_ok {
        let parts: Vec<&str> = segs
            .iter()
            .filter_map(|s| match s {
                Seg::Key(k) => Some(k.as_str()),
                Seg::Each => None,
            })
            .collect();
        return parts.join(".");
    }
    let mut path = String::from("$");
    for s in segs {
        match s {
            Seg::Each => path.push_str("[*]"),
            Seg::Key(k) if is_shorthand(k) => {
                path.push('.');
                path.push_str(k);
            }
            Seg::Key(k) => {
                path.push_str("['");
                for c in k.chars() {
                    if c == '\'' || c == '\\' {
                        path.push('\\');
                    }
                    path.push(c);
                }
                path.push_str("']");
            }
        }
    }
    path
}

/// A member name JSONPath writes after a dot (ASCII, to be plain).
fn is_shorthand(k: &str) -> bool {
    let mut chars = k.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests;
