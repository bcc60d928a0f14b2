//! Checks of a test file that read past its format: what `test` would
//! otherwise find only when a case runs, reported at their place by `test`
//! and `validate` alike, before any case runs.

use super::format::{Case, OneOrMany, TestFile};
use hookflow_executor::Stub;
use hookflow_model::yaml::{Pos, Seg, Yaml};
use std::collections::HashMap;
use std::path::Path;

/// Every such problem of `tests` (read from `file`, whose folder holds its
/// `body_file`s), each with its position in `tree`.
pub fn check(file: &Path, tests: &TestFile, tree: &Yaml) -> Vec<(Pos, String)> {
    let base = file.parent().unwrap_or(Path::new("."));
    let mut problems = Vec::new();
    let mut names: HashMap<&str, Pos> = HashMap::new();
    for (i, case) in tests.cases.iter().enumerate() {
        let at = |rest: &[Seg]| {
            let mut path: Vec<Seg> = vec!["cases".into(), i.into()];
            path.extend_from_slice(rest);
            path
        };
        let name_pos = tree.locate_value(&at(&["name".into()]));
        match names.get(case.name.as_str()) {
            Some(first) => problems.push((
                name_pos,
                format!(
                    "a case named `{}` is already on line {}; give each case its own name \
                     (`--case NAME` picks cases by name)",
                    case.name, first.line
                ),
            )),
            None => {
                names.insert(&case.name, name_pos);
            }
        }
        problems.extend(request(case, base, |field| {
            tree.locate_value(&at(&["request".into(), field.into()]))
        }));
        for (key, stubs) in &case.stubs {
            let stub_at = |index: Option<usize>| {
                let mut path = at(&["stubs".into(), key.as_str().into()]);
                path.extend(index.map(Seg::from));
                path.push("status".into());
                tree.locate_value(&path)
            };
            let answers: Vec<(Option<usize>, &Stub)> = match stubs {
                OneOrMany::One(stub) => vec![(None, &stub.0)],
                OneOrMany::Many(list) => list
                    .iter()
                    .enumerate()
                    .map(|(j, s)| (Some(j), &s.0))
                    .collect(),
            };
            for (index, stub) in answers {
                if let Stub::Response { status, .. } = stub {
                    problems.extend(status_problem(*status).map(|m| (stub_at(index), m)));
                }
            }
        }
        if let Some(status) = case.expect.status {
            let pos = tree.locate_value(&at(&["expect".into(), "status".into()]));
            problems.extend(status_problem(status).map(|m| (pos, m)));
        }
    }
    problems
}

/// The problems of a case's request: more than one body, a `body_file`
/// that is not a file; `pos` finds a request field's value.
fn request(case: &Case, base: &Path, pos: impl Fn(&str) -> Pos) -> Vec<(Pos, String)> {
    let r = &case.request;
    let given: Vec<&str> = [
        ("body", r.body.is_some()),
        ("body_file", r.body_file.is_some()),
        ("raw_body", r.raw_body.is_some()),
    ]
    .iter()
    .filter(|(_, given)| *given)
    .map(|(name, _)| *name)
    .collect();
    let mut problems = Vec::new();
    if let [first, second, ..] = given.as_slice() {
        problems.push((
            pos(second),
            format!(
                "give one of `body`, `body_file` or `raw_body`: this request has `{first}` \
                 and `{second}`; remove one"
            ),
        ));
    }
    if let Some(name) = &r.body_file {
        let full = base.join(name);
        if !full.is_file() {
            problems.push((
                pos("body_file"),
                format!(
                    "body_file `{name}` is not a file (looked for {}); the path is relative \
                     to the test file's folder",
                    full.display()
                ),
            ));
        }
    }
    problems
}

/// What is wrong with `status` as an HTTP status, if anything.
fn status_problem(status: u16) -> Option<String> {
    (!(100..=599).contains(&status))
        .then(|| format!("status must be an HTTP status code from 100 to 599, not {status}"))
}
