//! Unit tests of the tree: positions, syntax errors, booleans and paths.

use super::*;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // fields are only read through Debug
struct Doc {
    title: String,
    #[serde(default)]
    count: Option<u16>,
}

fn err_of<T: for<'a> Deserialize<'a> + std::fmt::Debug>(text: &str) -> (u32, u32, String) {
    let tree = Yaml::parse(text).expect("valid yaml");
    let e = from_yaml::<T>(&tree).expect_err("should fail");
    let pos = e.pos.unwrap_or_default();
    (pos.line, pos.column, e.message)
}

#[test]
fn positions_point_at_the_offending_key_or_value() {
    let (l, c, m) = err_of::<Doc>("title: a\nextra: 1\n");
    assert_eq!((l, c), (2, 1));
    assert!(m.contains("unknown field `extra`"), "{m}");
    let (l, c, m) = err_of::<Doc>("title: a\ncount: x\n");
    assert_eq!((l, c), (2, 8));
    assert!(m.contains("invalid type"), "{m}");
    let (l, c, m) = err_of::<Doc>("count: 1\n");
    assert_eq!((l, c), (1, 1));
    assert!(m.contains("missing field `title`"), "{m}");
}

#[test]
fn syntax_errors_and_duplicate_keys_have_positions() {
    let e = Yaml::parse("a: 1\nb: [\n").expect_err("unclosed");
    assert_eq!(e.pos.line, 2);
    let e = Yaml::parse("a: 1\na: 2\n").expect_err("dup");
    assert_eq!((e.pos.line, e.pos.column), (2, 1));
    assert!(e.message.contains("duplicate"), "{}", e.message);
}

#[test]
fn only_yaml_1_2_booleans() {
    let tree = Yaml::parse("a: n\nb: yes\nc: true\nd: 007\n").expect("yaml");
    let kinds: Vec<YamlKind> = match tree.kind {
        YamlKind::Map(entries) => entries.into_iter().map(|(_, _, v)| v.kind).collect(),
        _ => Vec::new(),
    };
    assert_eq!(
        kinds,
        vec![
            YamlKind::Str("n".into()),
            YamlKind::Str("yes".into()),
            YamlKind::Bool(true),
            YamlKind::Str("007".into())
        ]
    );
}

#[test]
fn locate_follows_keys_and_indexes() {
    let tree = Yaml::parse("nodes:\n  - type: log\n    message: hi\n").expect("yaml");
    let path = [Seg::from("nodes"), Seg::from(0), Seg::from("message")];
    assert_eq!(tree.locate(&path), Pos { line: 3, column: 5 });
    assert_eq!(
        tree.locate_value(&path),
        Pos {
            line: 3,
            column: 14
        }
    );
    let missing = [Seg::from("nodes"), Seg::from(0), Seg::from("nope")];
    assert_eq!(tree.locate(&missing), Pos { line: 2, column: 5 });
}
