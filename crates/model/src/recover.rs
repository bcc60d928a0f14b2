//! Reading a file's tree into a [`WorkflowDef`] without stopping at the
//! first problem.
//!
//! serde stops at the first error. To report every problem of a file, the
//! reader repairs a copy of the tree after each error and reads it again:
//! - an unknown field is left out;
//! - a value of the wrong kind is left out, and its field takes its default
//!   (a field that must be there gets a stand-in when there is an obvious
//!   one: `title`, `trigger`, `trigger.type`);
//! - a node that cannot be read (unknown or missing `type`, a missing field,
//!   a branch that is not a list…) is replaced by a stand-in that keeps its
//!   key and the nodes nested in it, so that those are still checked and
//!   references to its key are not reported as well.
//!
//! What a repair makes impossible to check is recorded in [`Skipped`] and
//! said in the message of the error that caused it. Every node of the copy
//! keeps the position it has in the file, so later diagnostics stay exact.
//!
//! Before reading, a YAML number or boolean written where an expression goes
//! (`expression: 1`, `if: true`) becomes the text of that expression.

use crate::def::WorkflowDef;
use crate::suggest::close_names;
use crate::yaml::{from_yaml, DeErrorKind, Pos, Seg, Yaml, YamlKind};
use std::collections::BTreeSet;

/// How many errors one file may repair before reading stops.
const MAX_ROUNDS: usize = 200;

/// Fields whose absence changes how a node is checked: a node that loses
/// one of them is replaced by a stand-in rather than checked without it.
const SHAPING_FIELDS: &[&str] = &[
    "type",
    "then",
    "else",
    "reject_on_false",
    "cases",
    "default",
    "do",
    "branches",
    "duration",
    "until",
    "status",
    "key",
];

const NODE_NOTE: &str = " (the rest of this node is checked once this is fixed)";
const MODE_NOTE: &str = " (the checks that depend on the mode are made once this is fixed)";
const VARS_NOTE: &str = " (`vars.…` references are checked once this is fixed)";
const SECRETS_NOTE: &str = " (`secrets.…` references are checked once this is fixed)";

/// What could not be checked because of an earlier error of the file.
#[derive(Debug, Default, Clone)]
pub struct Skipped {
    /// `trigger.mode` could not be read: checks that depend on the mode.
    pub mode: bool,
    /// A parse entry could not be read: `vars.X` references.
    pub vars: bool,
    /// `secrets` could not be read: `secrets.X` references.
    pub secrets: bool,
    /// The positions of nodes replaced by a stand-in.
    pub nodes: BTreeSet<Pos>,
}

/// The outcome of reading a tree.
#[derive(Debug)]
pub struct Read {
    /// The definition, unless the file could not be read at all.
    pub def: Option<WorkflowDef>,
    /// The repaired tree the definition was read from (positions as in the file).
    pub tree: Yaml,
    /// Every error found, in the order found.
    pub errors: Vec<(Pos, String)>,
    /// What the repairs left unchecked.
    pub skipped: Skipped,
}

/// Reads a workflow definition, reporting every problem serde finds.
pub fn read_workflow(tree: Yaml) -> Read {
    let mut reader = Reader {
        tree,
        errors: Vec::new(),
        skipped: Skipped::default(),
        dropped: BTreeSet::new(),
        misspelt: BTreeSet::new(),
    };
    if !matches!(reader.tree.kind, YamlKind::Map(_)) {
        let found = match &reader.tree.kind {
            YamlKind::Null => "the file is empty".to_string(),
            _ => format!("the file holds {}", kind_name(&reader.tree)),
        };
        reader.errors.push((
            reader.tree.pos,
            format!("{found}; a workflow is a mapping with at least `title` and `trigger`"),
        ));
        return reader.finish(None);
    }
    scalar_expressions(&mut reader.tree);
    for _ in 0..MAX_ROUNDS {
        match from_yaml::<WorkflowDef>(&reader.tree) {
            Ok(def) => return reader.finish(Some(def)),
            Err(e) => {
                let pos = e.pos.unwrap_or_default();
                if !reader.repair(pos, e.message, e.kind, &e.path) {
                    return reader.finish(None);
                }
            }
        }
    }
    reader.errors.push((
        Pos { line: 1, column: 1 },
        format!("more than {MAX_ROUNDS} problems; fix these and validate again"),
    ));
    reader.finish(None)
}

struct Reader {
    tree: Yaml,
    errors: Vec<(Pos, String)>,
    skipped: Skipped,
    /// Fields left out after their error was reported: (mapping path, field).
    dropped: BTreeSet<(Vec<Seg>, String)>,
    /// Unknown fields left out: (mapping path, field).
    misspelt: BTreeSet<(Vec<Seg>, String)>,
}

impl Reader {
    fn finish(self, def: Option<WorkflowDef>) -> Read {
        Read {
            def,
            tree: self.tree,
            errors: self.errors,
            skipped: self.skipped,
        }
    }

    /// Reports one error and repairs the tree past it; false when it cannot.
    fn repair(&mut self, pos: Pos, message: String, kind: DeErrorKind, path: &[Seg]) -> bool {
        match kind {
            DeErrorKind::UnknownField(field) => {
                let parent = &path[..path.len().saturating_sub(1)];
                let name = format!("`{field}`");
                let message =
                    message.replacen(&name, &format!("{name}{}", self.in_node(parent, true)), 1);
                self.errors.push((pos, message));
                self.misspelt.insert((parent.to_vec(), field.clone()));
                remove_key(&mut self.tree, parent, &field)
            }
            DeErrorKind::MissingField(field) => {
                // A field left out by a repair, or misspelt (already reported
                // with a "did you mean"): not reported again.
                let ours = self.dropped.contains(&(path.to_vec(), field.to_string()))
                    || self
                        .misspelt
                        .iter()
                        .any(|(at, typo)| at == path && !close_names(typo, [field]).is_empty());
                if let Some((value, note)) = stand_in_value(path, field) {
                    if !ours {
                        self.errors.push((pos, format!("{message}{note}")));
                    }
                    self.note_stand_in_value(path);
                    return insert_key(&mut self.tree, path, field, value);
                }
                let report =
                    (!ours).then(|| (pos, format!("{message}{}", self.in_node(path, false))));
                self.unreadable(path, report)
            }
            DeErrorKind::Other => self.unreadable(path, Some((pos, message))),
        }
    }

    fn note_stand_in_value(&mut self, path: &[Seg]) {
        if path.is_empty() {
            // A whole trigger stood in: its mode and parse entries are unknown.
            self.skipped.mode = true;
            self.skipped.vars = true;
        }
    }

    /// The value at `path` cannot be read: leave out the smallest part that
    /// contains it, report the error with what that leaves unchecked.
    fn unreadable(&mut self, path: &[Seg], report: Option<(Pos, String)>) -> bool {
        if let Some(n) = node_prefix(path) {
            let node = &path[..n];
            let field_of_node = path.len() == n + 1;
            let shaping =
                matches!(path.get(n), Some(Seg::Key(k)) if SHAPING_FIELDS.contains(&k.as_str()));
            if path.len() > n && (!field_of_node || !shaping) {
                if let Some(Seg::Key(k)) = path.last() {
                    let parent = &path[..path.len() - 1];
                    if let Some((pos, message)) = report {
                        self.errors.push((pos, message));
                    }
                    self.dropped.insert((parent.to_vec(), k.clone()));
                    return remove_key(&mut self.tree, parent, k);
                }
            }
            if let Some((pos, message)) = report {
                self.errors.push((pos, format!("{message}{NODE_NOTE}")));
            }
            return self.stand_in_node(node);
        }
        // Outside the nodes: leave out the innermost field holding the value.
        let Some(at) = path.iter().rposition(|s| matches!(s, Seg::Key(_))) else {
            if let Some(report) = report {
                self.errors.push(report);
            }
            return false;
        };
        let held = &path[..=at];
        let note = self.skip_for(held);
        if let Some((pos, message)) = report {
            self.errors.push((pos, format!("{message}{note}")));
        }
        let Seg::Key(k) = &path[at] else {
            return false;
        };
        self.dropped.insert((path[..at].to_vec(), k.clone()));
        remove_key(&mut self.tree, &path[..at], k)
    }

    /// Records what leaving out the field at `path` (outside the nodes)
    /// leaves unchecked, and says so.
    fn skip_for(&mut self, path: &[Seg]) -> &'static str {
        let keys: Vec<&str> = path
            .iter()
            .map(|s| match s {
                Seg::Key(k) => k.as_str(),
                Seg::Index(_) => "",
            })
            .collect();
        match keys.as_slice() {
            ["trigger"] | ["trigger", "mode"] => {
                self.skipped.mode = true;
                if keys.len() == 1 {
                    self.skipped.vars = true;
                }
                MODE_NOTE
            }
            ["trigger", "parse", ..]
                if path.len() <= 4 || matches!(keys.last(), Some(&"key") | Some(&"alias")) =>
            {
                self.skipped.vars = true;
                VARS_NOTE
            }
            ["secrets", ..] => {
                self.skipped.secrets = true;
                SECRETS_NOTE
            }
            _ => "",
        }
    }

    /// Replaces the node at `path` by a stand-in keeping its key and nested nodes.
    fn stand_in_node(&mut self, path: &[Seg]) -> bool {
        let Some(node) = get_mut(&mut self.tree, path) else {
            return false;
        };
        if self.skipped.nodes.contains(&node.pos) {
            // Already a stand-in: nothing more can be repaired here.
            return false;
        }
        self.skipped.nodes.insert(node.pos);
        *node = stand_in(node);
        true
    }

    /// " in a `log` node" when `path` is a node, for messages about its fields.
    fn in_node(&self, path: &[Seg], field: bool) -> String {
        if node_prefix(path) != Some(path.len()) {
            return String::new();
        }
        let type_name = self.tree.get(path).and_then(|n| match &n.kind {
            YamlKind::Map(entries) => entries.iter().find_map(|(k, _, v)| match &v.kind {
                YamlKind::Str(t) if k == "type" => Some(t.clone()),
                _ => None,
            }),
            _ => None,
        });
        match (type_name, field) {
            (Some(t), true) => format!(" in a `{t}` node"),
            (Some(t), false) => format!(": a `{t}` node needs it"),
            (None, _) => String::new(),
        }
    }
}

/// A value for a missing field that has an obvious one, and what it leaves unchecked.
fn stand_in_value(path: &[Seg], field: &str) -> Option<(Yaml, &'static str)> {
    let at = |kind| Yaml {
        pos: Pos::default(),
        kind,
    };
    match (path, field) {
        ([], "title") => Some((at(YamlKind::Str(String::new())), "")),
        ([], "trigger") => Some((
            at(YamlKind::Map(vec![(
                "type".into(),
                Pos::default(),
                at(YamlKind::Str("webhook".into())),
            )])),
            MODE_NOTE,
        )),
        ([Seg::Key(t)], "type") if t == "trigger" => {
            Some((at(YamlKind::Str("webhook".into())), ""))
        }
        _ => None,
    }
}

/// A node that reads as a harmless `switch` (or `log` when it has no nested
/// nodes), with the key and the nested node lists of `node`.
fn stand_in(node: &Yaml) -> Yaml {
    let pos = node.pos;
    let at = |kind| Yaml { pos, kind };
    let mut key = None;
    let mut lists = Vec::new();
    if let YamlKind::Map(entries) = &node.kind {
        for (k, kpos, v) in entries {
            match (k.as_str(), &v.kind) {
                ("key", YamlKind::Str(_)) => key = Some((k.clone(), *kpos, v.clone())),
                ("then" | "else" | "default" | "do", YamlKind::Seq(_)) => lists.push(v.clone()),
                ("cases", YamlKind::Seq(cases)) => {
                    for case in cases {
                        if let YamlKind::Map(fields) = &case.kind {
                            lists.extend(
                                fields
                                    .iter()
                                    .filter(|(ck, _, cv)| {
                                        ck == "do" && matches!(cv.kind, YamlKind::Seq(_))
                                    })
                                    .map(|(_, _, cv)| cv.clone()),
                            );
                        }
                    }
                }
                ("branches", YamlKind::Seq(branches)) => lists.extend(
                    branches
                        .iter()
                        .filter(|b| matches!(b.kind, YamlKind::Seq(_)))
                        .cloned(),
                ),
                _ => {}
            }
        }
    }
    let text = |s: &str| at(YamlKind::Str(s.to_string()));
    let mut entries = Vec::new();
    entries.extend(key);
    if lists.is_empty() {
        entries.push(("type".into(), pos, text("log")));
        entries.push(("message".into(), pos, text("")));
    } else {
        entries.push(("type".into(), pos, text("switch")));
        let cases = lists
            .into_iter()
            .map(|list| {
                at(YamlKind::Map(vec![
                    ("if".into(), pos, text("true")),
                    ("do".into(), pos, list),
                ]))
            })
            .collect();
        entries.push(("cases".into(), pos, at(YamlKind::Seq(cases))));
    }
    at(YamlKind::Map(entries))
}

/// Where a path is in the workflow's shape.
#[derive(Clone, Copy, PartialEq)]
enum Place {
    Root,
    NodeList,
    Node,
    CaseList,
    Case,
    BranchList,
    Other,
}

fn step(place: Place, seg: &Seg) -> Place {
    match (place, seg) {
        (Place::Root, Seg::Key(k)) if k == "nodes" => Place::NodeList,
        (Place::NodeList, Seg::Index(_)) => Place::Node,
        (Place::Node, Seg::Key(k)) => match k.as_str() {
            "then" | "else" | "default" | "do" => Place::NodeList,
            "cases" => Place::CaseList,
            "branches" => Place::BranchList,
            _ => Place::Other,
        },
        (Place::CaseList, Seg::Index(_)) => Place::Case,
        (Place::Case, Seg::Key(k)) if k == "do" => Place::NodeList,
        (Place::BranchList, Seg::Index(_)) => Place::NodeList,
        _ => Place::Other,
    }
}

/// The length of the longest prefix of `path` that is a node.
pub(crate) fn node_prefix(path: &[Seg]) -> Option<usize> {
    let mut place = Place::Root;
    let mut found = None;
    for (i, seg) in path.iter().enumerate() {
        place = step(place, seg);
        match place {
            Place::Node => found = Some(i + 1),
            Place::Other => break,
            _ => {}
        }
    }
    found
}

/// Turns YAML numbers and booleans written as expressions into their text.
fn scalar_expressions(root: &mut Yaml) {
    fn scalar_text(value: &mut Yaml) {
        let text = match &value.kind {
            YamlKind::Bool(b) => b.to_string(),
            YamlKind::Int(i) => i.to_string(),
            YamlKind::UInt(u) => u.to_string(),
            YamlKind::Float(f) => format!("{f:?}"),
            _ => return,
        };
        value.kind = YamlKind::Str(text);
    }
    fn walk(node: &mut Yaml, place: Place) {
        let YamlKind::Map(entries) = &mut node.kind else {
            if let (YamlKind::Seq(items), Place::NodeList | Place::CaseList | Place::BranchList) =
                (&mut node.kind, place)
            {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(item, step(place, &Seg::Index(i)));
                }
            }
            return;
        };
        let type_name = entries.iter().find_map(|(k, _, v)| match &v.kind {
            YamlKind::Str(t) if k == "type" => Some(t.clone()),
            _ => None,
        });
        let expression = match (place, type_name.as_deref()) {
            (Place::Node, Some("condition")) | (Place::Case, _) => Some("if"),
            (Place::Node, Some("calculation")) => Some("expression"),
            (Place::Node, Some("loop")) => Some("over"),
            _ => None,
        };
        for (k, _, v) in entries.iter_mut() {
            if Some(k.as_str()) == expression {
                scalar_text(v);
            }
            let next = step(place, &Seg::Key(k.clone()));
            if next != Place::Other {
                walk(v, next);
            }
        }
    }
    walk(root, Place::Root);
}

fn get_mut<'a>(tree: &'a mut Yaml, path: &[Seg]) -> Option<&'a mut Yaml> {
    let mut node = tree;
    for seg in path {
        node = match (&mut node.kind, seg) {
            (YamlKind::Map(entries), Seg::Key(k)) => entries
                .iter_mut()
                .find(|(key, _, _)| key == k)
                .map(|e| &mut e.2)?,
            (YamlKind::Seq(items), Seg::Index(i)) => items.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(node)
}

fn remove_key(tree: &mut Yaml, map: &[Seg], key: &str) -> bool {
    match get_mut(tree, map).map(|n| &mut n.kind) {
        Some(YamlKind::Map(entries)) => {
            let before = entries.len();
            entries.retain(|(k, _, _)| k != key);
            entries.len() < before
        }
        _ => false,
    }
}

fn insert_key(tree: &mut Yaml, map: &[Seg], key: &str, mut value: Yaml) -> bool {
    match get_mut(tree, map) {
        Some(node) => {
            let pos = node.pos;
            value.pos = pos;
            if let YamlKind::Map(entries) = &mut value.kind {
                for (_, kpos, v) in entries.iter_mut() {
                    *kpos = pos;
                    v.pos = pos;
                }
            }
            match &mut node.kind {
                YamlKind::Map(entries) if !entries.iter().any(|(k, _, _)| k == key) => {
                    entries.push((key.to_string(), pos, value));
                    true
                }
                _ => false,
            }
        }
        None => false,
    }
}

fn kind_name(node: &Yaml) -> &'static str {
    match node.kind {
        YamlKind::Null => "nothing",
        YamlKind::Bool(_) => "a boolean",
        YamlKind::Int(_) | YamlKind::UInt(_) | YamlKind::Float(_) => "a number",
        YamlKind::Str(_) => "a single text",
        YamlKind::Seq(_) => "a list",
        YamlKind::Map(_) => "a mapping",
    }
}
