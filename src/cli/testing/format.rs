//! The test file format (`<id>.test.yaml`), read with positions, and its
//! checks against the workflow it tests.

use hookflow_executor::{Stub, StubAnswers, StubFailure};
use hookflow_model::diag::{Diagnostic, Severity};
use hookflow_model::runtime::{NodeKind, Workflow};
use hookflow_model::testfile::RunOutcomeDef;
use hookflow_model::yaml::{from_yaml, DeErrorKind, Pos, Seg, Yaml, YamlKind};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value as Json;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::marker::PhantomData;
use std::path::Path;

/// A test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// Environment variables (secrets) set before the cases run.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The cases, run in order.
    pub cases: Vec<Case>,
}

/// One case: a request, the answers of request nodes, what to expect.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Its name (`--case NAME` selects it).
    pub name: String,
    /// The request sent to the workflow.
    #[serde(default)]
    pub request: TestRequest,
    /// Answers for request nodes, by node key: one mapping answers every
    /// try; a list answers one try each, in order.
    #[serde(default)]
    pub stubs: BTreeMap<String, OneOrMany<StubDef>>,
    /// What the case must see.
    #[serde(default)]
    pub expect: Expect,
}

/// The request of a case.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestRequest {
    /// Method (default POST).
    #[serde(default)]
    pub method: Option<String>,
    /// Headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The query string, e.g. `a=1&b=2`.
    #[serde(default)]
    pub query: Option<String>,
    /// A JSON body (sent as application/json unless a content-type header says otherwise).
    #[serde(default)]
    pub body: Option<Json>,
    /// A body read from a file next to the test file.
    #[serde(default)]
    pub body_file: Option<String>,
    /// A body sent as is.
    #[serde(default)]
    pub raw_body: Option<String>,
}

/// One answer of a request node's stub: `status`/`headers`/`body`, or
/// `error` for a try without an answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "StubFields")]
pub struct StubDef(pub Stub);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StubFields {
    /// Status code (default 200).
    #[serde(default)]
    status: Option<u16>,
    /// Response headers.
    #[serde(default)]
    headers: Option<serde_json::Map<String, Json>>,
    /// Response body (JSON, or a string).
    #[serde(default)]
    body: Option<Json>,
    /// A try without an answer: `timeout` or `connect`.
    #[serde(default)]
    error: Option<StubError>,
}

/// A try that got no answer.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StubError {
    /// The try timed out.
    Timeout,
    /// The connection could not be made.
    Connect,
}

impl TryFrom<StubFields> for StubDef {
    type Error = String;
    fn try_from(f: StubFields) -> Result<StubDef, String> {
        match f.error {
            Some(_) if f.status.is_some() || f.headers.is_some() || f.body.is_some() => {
                Err("a stub with `error` has no answer: give `error` alone, \
                 or `status`, `headers` and `body` without it"
                    .into())
            }
            Some(error) => Ok(StubDef(Stub::Failure(match error {
                StubError::Timeout => StubFailure::Timeout,
                StubError::Connect => StubFailure::Connect,
            }))),
            None => Ok(StubDef(Stub::Response {
                status: f.status.unwrap_or(200),
                headers: f.headers.unwrap_or_default(),
                body: f.body.unwrap_or(Json::Null),
            })),
        }
    }
}

/// What a case must see.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The answer's status.
    #[serde(default)]
    pub status: Option<u16>,
    /// Fields the answer's body must have (a subset match for mappings).
    #[serde(default)]
    pub body: Option<Json>,
    /// Headers the answer must carry.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The run's final status: resolved, failed or aborted (the one
    /// definition the schema describes too).
    #[serde(default)]
    pub run: Option<RunOutcomeDef>,
    /// The keys of the nodes that ran, in order.
    #[serde(default)]
    pub nodes: Option<Vec<String>>,
    /// What request nodes sent, by node key: one mapping that every request
    /// of the node matches, or a list with one item per request, in order.
    #[serde(default)]
    pub requests: BTreeMap<String, OneOrMany<RequestExpect>>,
}

impl Expect {
    /// True when it checks nothing.
    fn is_empty(&self) -> bool {
        self.status.is_none()
            && self.body.is_none()
            && self.headers.is_empty()
            && self.run.is_none()
            && self.nodes.is_none()
            && self.requests.is_empty()
    }
}

/// What one request sent by a request node must be.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestExpect {
    /// The method (any case).
    #[serde(default)]
    pub method: Option<String>,
    /// The whole URL, query string included.
    #[serde(default)]
    pub url: Option<String>,
    /// Query parameters the URL must have (others may be there too); a list
    /// for a repeated parameter.
    #[serde(default)]
    pub query: BTreeMap<String, Json>,
    /// Headers the request must carry (names in any case).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The body: mappings match as subsets, types included (`12.5` is not
    /// `"12.5"`). A JSON body is compared as JSON, a form body as a mapping
    /// of strings, any other body as text.
    #[serde(default)]
    pub body: Option<Json>,
}

/// One mapping, or a list of them.
#[derive(Debug)]
pub enum OneOrMany<T> {
    /// One mapping.
    One(T),
    /// A list.
    Many(Vec<T>),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OneOrManyVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for OneOrManyVisitor<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping, or a list of mappings")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(OneOrMany::One)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Vec::<T>::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(OneOrMany::Many)
            }
        }
        d.deserialize_any(OneOrManyVisitor(PhantomData))
    }
}

impl Case {
    /// The stubs as the executor takes them.
    pub fn stub_answers(&self) -> HashMap<String, StubAnswers> {
        self.stubs
            .iter()
            .map(|(key, def)| {
                let answers = match def {
                    OneOrMany::One(stub) => StubAnswers::Every(stub.0.clone()),
                    OneOrMany::Many(list) => {
                        StubAnswers::Each(list.iter().map(|s| s.0.clone()).collect())
                    }
                };
                (key.clone(), answers)
            })
            .collect()
    }
}

/// Most problems one file reports before reading stops.
const MAX_PROBLEMS: usize = 200;

/// Reads a test file's tree, reporting every problem, not just the first:
/// after each, a copy of the tree is read again without the part in error
/// (an unknown field, a value of the wrong kind; a case that lacks a field
/// it needs). The file, when what is left reads.
fn read_all(tree: &Yaml) -> (Option<TestFile>, Vec<(Pos, String)>) {
    let mut tree = tree.clone();
    let mut problems = Vec::new();
    // Fields left out after their value's error, by the position of their
    // mapping (paths shift when a case goes): their absence is not
    // reported again.
    let mut dropped: Vec<(Pos, String)> = Vec::new();
    let field_of = |tree: &Yaml, path: &[Seg]| match path.split_last() {
        Some((Seg::Key(key), parent)) => tree.get(parent).map(|m| (m.pos, key.clone())),
        _ => None,
    };
    while problems.len() < MAX_PROBLEMS {
        let e = match from_yaml::<TestFile>(&tree) {
            Ok(file) => return (Some(file), problems),
            Err(e) => e,
        };
        let pos = e.pos.unwrap_or_default();
        let gone = match &e.kind {
            DeErrorKind::MissingField(field) => {
                let at = tree.get(&e.path).map(|m| (m.pos, field.to_string()));
                if !at.is_some_and(|at| dropped.contains(&at)) {
                    problems.push((pos, e.message));
                }
                // The mapping cannot be read without it: its case goes.
                match e.path.iter().position(|s| *s == Seg::from("cases")) {
                    Some(i) if e.path.len() > i + 1 => tree.remove(&e.path[..i + 2]),
                    _ => false,
                }
            }
            _ => {
                problems.push((pos, e.message));
                dropped.extend(field_of(&tree, &e.path));
                tree.remove(&e.path)
            }
        };
        if !gone {
            return (None, problems);
        }
    }
    problems.push((
        Pos { line: 1, column: 1 },
        format!("more than {MAX_PROBLEMS} problems; fix these and run the tests again"),
    ));
    (None, problems)
}

/// A test file read: its cases, or every problem found, with positions.
pub fn read(path: &Path, text: &str) -> Result<(TestFile, Yaml), Vec<Diagnostic>> {
    let error = |pos: Pos, message: String| Diagnostic {
        file: path.to_path_buf(),
        line: pos.line,
        column: pos.column,
        severity: Severity::Error,
        message,
    };
    let tree = Yaml::parse(text).map_err(|e| vec![error(e.pos, e.message)])?;
    let (tests, mut problems) = read_all(&tree);
    let mut problems: Vec<Diagnostic> = problems
        .drain(..)
        .map(|(pos, message)| error(pos, message))
        .collect();
    // The parts read (those with a problem of their own are left out) are
    // checked too: every problem of the file is reported at once.
    let Some(tests) = tests else {
        return Err(problems);
    };
    problems.extend(
        super::checks::check(path, &tests, &tree)
            .into_iter()
            .map(|(pos, message)| error(pos, message)),
    );
    for (i, case) in tests.cases.iter().enumerate() {
        for (key, stubs) in &case.stubs {
            if matches!(stubs, OneOrMany::Many(list) if list.is_empty()) {
                let pos = tree.locate_value(&[
                    "cases".into(),
                    i.into(),
                    "stubs".into(),
                    key.as_str().into(),
                ]);
                problems.push(error(
                    pos,
                    format!(
                        "the stub list of `{key}` is empty: give at least one answer \
                         (one mapping answers every try)"
                    ),
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok((tests, tree))
    } else {
        problems.sort_by_key(|d| (d.line, d.column));
        Err(problems)
    }
}

/// Every key of `stubs` and `expect.requests` that names no request node of
/// `workflow`, as an error at that key.
pub fn check_keys(
    path: &Path,
    tests: &TestFile,
    tree: &Yaml,
    workflow: &Workflow,
) -> Vec<Diagnostic> {
    let request_keys: Vec<&str> = workflow
        .keyed_nodes()
        .into_iter()
        .filter(|(_, id)| {
            workflow
                .nodes
                .get(*id)
                .is_some_and(|n| matches!(n.kind, NodeKind::Request(_)))
        })
        .map(|(k, _)| k)
        .collect();
    let mut problems = Vec::new();
    let mut problem = |at: &[Seg], message: String| {
        let pos = tree.locate(at);
        problems.push(Diagnostic {
            file: path.to_path_buf(),
            line: pos.line,
            column: pos.column,
            severity: Severity::Error,
            message,
        });
    };
    for (i, case) in tests.cases.iter().enumerate() {
        let body_at: Vec<Seg> = vec!["cases".into(), i.into(), "expect".into(), "body".into()];
        if tree.get(&body_at).is_some_and(|b| b.kind == YamlKind::Null) {
            problem(
                &body_at,
                "`body: null` expects nothing: give the body the answer must have \
                 (`\"\"` for an empty one), or leave `body` out"
                    .into(),
            );
        } else if case.expect.is_empty() {
            problem(
                &["cases".into(), i.into()],
                format!(
                    "case `{}` expects nothing, so it cannot fail: give it `expect:` \
                     (`status`, `body`, `headers`, `run`, `nodes` or `requests`)",
                    case.name
                ),
            );
        }
        let keys = case
            .stubs
            .keys()
            .map(|k| (k, ["stubs"].as_slice(), "stub"))
            .chain(
                case.expect
                    .requests
                    .keys()
                    .map(|k| (k, ["expect", "requests"].as_slice(), "request expectation")),
            );
        for (key, under, what) in keys {
            if request_keys.contains(&key.as_str()) {
                continue;
            }
            let mut at: Vec<Seg> = vec!["cases".into(), i.into()];
            at.extend(under.iter().map(|s| Seg::from(*s)));
            at.push(key.as_str().into());
            problem(&at, unknown_key_message(key, what, workflow, &request_keys));
        }
    }
    problems
}

fn unknown_key_message(
    key: &str,
    what: &str,
    workflow: &Workflow,
    request_keys: &[&str],
) -> String {
    let node_type = workflow
        .node_by_key(key)
        .and_then(|id| workflow.nodes.get(id))
        .map(|n| n.type_name());
    let head = match node_type {
        Some(kind) => format!(
            "{what} `{key}` names a `{kind}` node of workflow `{}`, not a request node",
            workflow.id
        ),
        None => format!(
            "{what} `{key}` names no request node of workflow `{}`",
            workflow.id
        ),
    };
    match closest(key, request_keys) {
        Some(near) => format!("{head}: did you mean `{near}`?"),
        None if request_keys.is_empty() => format!("{head}: it has no request nodes"),
        None => format!("{head}: its request nodes are {}", quoted(request_keys)),
    }
}

fn quoted(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The candidate nearest to `word` by edit distance (a swap of two
/// neighbours counts as one edit), if it is near enough to be a typo.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = (1 + word.chars().count() / 4).min(3);
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal string alignment distance: insertions, deletions, substitutions
/// and swaps of neighbours, each one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for i in 0..=a.len() {
        d[i * width] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(width) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_their_key() {
        assert_eq!(edit_distance("inventroy", "inventory"), 1);
        assert_eq!(edit_distance("erp", "erp"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(
            closest("inventroy", &["erp", "inventory"]),
            Some("inventory")
        );
        assert_eq!(closest("notify", &["erp", "inventory"]), None);
        assert_eq!(closest("ep", &["erp"]), Some("erp"));
    }

    #[test]
    fn stubs_are_one_answer_or_a_list() {
        let text = "cases:\n  - name: c\n    stubs:\n      a: { status: 503 }\n      b:\n        - { error: timeout }\n        - { body: { ok: true } }\n";
        let (file, _) = read(Path::new("x.test.yaml"), text).expect("reads");
        let answers = file.cases[0].stub_answers();
        assert!(matches!(
            &answers["a"],
            StubAnswers::Every(Stub::Response { status: 503, .. })
        ));
        let StubAnswers::Each(list) = &answers["b"] else {
            panic!("a list: {answers:?}");
        };
        assert_eq!(list[0], Stub::Failure(StubFailure::Timeout));
        assert!(matches!(&list[1], Stub::Response { status: 200, .. }));
    }

    #[test]
    fn bad_stubs_are_errors_at_their_place() {
        let check = |text: &str, want: (u32, u32), message: &str| {
            let problems = read(Path::new("x.test.yaml"), text).expect_err("refused");
            let p = &problems[0];
            assert_eq!((p.line, p.column), want, "{p}");
            assert!(p.message.contains(message), "{p}");
        };
        check(
            "cases:\n  - name: c\n    stubs:\n      a: { status: 200, error: timeout }\n",
            (4, 10),
            "give `error` alone",
        );
        check(
            "cases:\n  - name: c\n    stubs:\n      a: { statuss: 200 }\n",
            (4, 12),
            "unknown field `statuss`",
        );
        check(
            "cases:\n  - name: c\n    stubs:\n      a: []\n",
            (4, 10),
            "the stub list of `a` is empty",
        );
        check(
            "cases:\n  - name: c\n    stubs:\n      a:\n        - { error: late }\n",
            (5, 20),
            "timeout",
        );
    }
}
