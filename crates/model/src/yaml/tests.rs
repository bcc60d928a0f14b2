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

/// The quick tree, when there is one, is the full path's tree: same kinds,
/// same keys in the same order, same positions.
fn assert_quick_is_full(text: &str, origin: &str) -> bool {
    let Some(quick) = Yaml::parse_quick(text) else {
        return false;
    };
    let (full, duplicates) = Yaml::parse_lenient(text).unwrap_or_else(|e| {
        panic!("{origin}: the quick path read what the full one refuses: {e:?}")
    });
    assert!(duplicates.is_empty(), "{origin}: quick read duplicate keys");
    assert_eq!(quick, full, "{origin}: quick and full trees differ");
    true
}

#[test]
fn the_quick_tree_is_the_full_tree_for_every_yaml_file_of_the_repository() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut stack = vec![root.clone()];
    let (mut files, mut quick) = (0, 0);
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !name.starts_with('.') && name != "target" && name != "vendor" {
                    stack.push(path);
                }
            } else if name.ends_with(".yaml") || name.ends_with(".yml") {
                let Ok(text) = std::fs::read_to_string(&path) else {
                    continue;
                };
                files += 1;
                if assert_quick_is_full(&text, &path.display().to_string()) {
                    quick += 1;
                } else {
                    eprintln!("left to the full path: {}", path.display());
                }
            }
        }
    }
    assert!(
        files >= 20,
        "found only {files} YAML files under {}",
        root.display()
    );
    assert!(
        quick * 2 >= files,
        "the quick path read only {quick} of {files} files"
    );
}

#[test]
fn the_quick_tree_reads_a_scalar_only_as_the_full_tree_does() {
    let scalars = [
        "",
        "~",
        "null",
        "Null",
        "NULL",
        "true",
        "false",
        "True",
        "FALSE",
        "yes",
        "No",
        "on",
        "OFF",
        "y",
        "n",
        "0",
        "7",
        "-7",
        "-0",
        "007",
        "+1",
        "1_000",
        "0x1F",
        "0o17",
        "1.5",
        "1e3",
        ".5",
        "-.inf",
        ".inf",
        ".NaN",
        "nan",
        "Infinity",
        "2024-01-01",
        "12:30",
        "abc",
        "a b",
        "x.y == \"z\"",
        "'quoted'",
        "\"q\"",
        "|\n  block\n",
        ">\n  folded\n  text\n",
        "9223372036854775807",
        "-9223372036854775808",
        "99999999999999999999",
        "${HOME}",
        "SUCCESS",
        "é",
        "a: b",
        "5s",
        "25h",
        "500ms",
        "1h30m",
        "0s",
        "1d",
        "1e5s",
        "10 s",
        "1s5",
        "&a x",
        "*a",
        "!!str 1",
        "!tag x",
        "[1, b, ~]",
        "{a: 1, 2: b}",
        "[]",
        "{}",
    ];
    for s in scalars {
        for text in [format!("v: {s}\n"), format!("- {s}\n"), format!("{s}: 1\n")] {
            assert_quick_is_full(&text, &format!("{text:?}"));
        }
    }
    // What the quick path must leave to the full one.
    for text in [
        "a: 1\na: 2\n",
        "a: &x 1\nb: *x\n",
        "<<: {a: 1}\n",
        "%YAML 1.2\n---\na: 1\n",
        "a: 1\n---\nb: 2\n",
        "a: [1\n",
        "v: yes\n",
        "v: 1.5\n",
        "v: !!str 1\n",
        "? [a]\n: 1\n",
        "# only a comment\n",
    ] {
        assert!(
            Yaml::parse_quick(text).is_none(),
            "{text:?} was read quickly"
        );
    }
    assert!(Yaml::parse_quick("title: a\ncount: 3\nok: true\nlist: [x, 'y']\n").is_some());
}

/// The quick path's limits count nodes and nesting, not a sequence's end:
/// an empty list at the deepest level it reads, and a list of as many
/// nodes as it reads, are read quickly, as the full path reads them; one
/// more of either is left to the full path.
#[test]
fn a_sequences_end_is_not_a_node_for_the_quick_paths_limits() {
    let nested = |depth: usize| format!("{}[]{}", "[".repeat(depth), "]".repeat(depth));
    assert!(assert_quick_is_full(&nested(48), "an empty list 48 deep"));
    assert!(Yaml::parse_quick(&nested(49)).is_none());
    let items = |count: usize| format!("[{}a]", "a, ".repeat(count - 1));
    assert!(assert_quick_is_full(&items(99_999), "a list of 99,999"));
    assert!(Yaml::parse_quick(&items(100_000)).is_none());
}

/// The parser's error for `text`: position and message.
fn syntax_error(text: &str) -> (u32, u32, String) {
    let e = Yaml::parse(text).expect_err("a syntax error");
    (e.pos.line, e.pos.column, e.message)
}

/// No message is the library's wording: each is hookflow's, with a hint
/// (after `;`), and keeps a position.
#[test]
fn syntax_errors_are_in_hookflows_words_with_a_hint() {
    let deep = {
        let mut s = String::from("title: x\nnodes:\n");
        let mut indent = String::from("  ");
        for _ in 0..34 {
            s += &format!("{indent}- type: condition\n{indent}  if: true\n{indent}  then:\n");
            indent += "    ";
        }
        s + &format!("{indent}- type: log\n")
    };
    let bomb = {
        let mut s = String::from("title: x\na: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n");
        for i in 1..9u8 {
            let (name, prev) = ((b'a' + i) as char, (b'a' + i - 1) as char);
            let uses = vec![format!("*{prev}"); 10].join(", ");
            s += &format!("{name}: &{name} [{uses}]\n");
        }
        s
    };
    let many: String = std::iter::once("v:\n".to_string())
        .chain((0..260_000).map(|i| format!("  - {i}\n")))
        .collect();
    let cases: Vec<(String, (u32, u32), &str)> = vec![
        (
            "title: x\ntrigger:\n\ttype: webhook\n".into(),
            (3, 2),
            "a tab cannot indent YAML; indent with spaces",
        ),
        // The tab indents the next item's field: it is reported there, as
        // a tab that indents (the parser places it after `log`, 5:11).
        (
            "title: T\ntrigger:\n  type: webhook\nnodes:\n  - type: log\n\tmessage: hi\n".into(),
            (6, 1),
            "a tab cannot indent YAML; indent with spaces",
        ),
        (
            "---\ntitle: x\n---\ntitle: y\n".into(),
            (4, 1),
            "a second YAML document (after a `---` line) starts here",
        ),
        (deep, (0, 0), "nested too deeply here (more than 64 levels)"),
        (bomb, (0, 0), "write fewer aliases"),
        (many, (0, 0), "the file has too many values"),
        (
            format!("v: {}\n", "[".repeat(5000)),
            (1, 259),
            "brackets `[` and `{` are nested too deeply",
        ),
        (
            "nodes:\n  - type: log\n    message: [unclosed\n  - type: log\n".into(),
            (4, 9),
            "a `[` or `{` opened before it may not be closed",
        ),
    ];
    for (text, pos, words) in cases {
        // 64 levels of nesting take more than a test thread's stack in a
        // debug build (not in a release one).
        let (line, column, message) = std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(move || syntax_error(&text))
            .expect("thread")
            .join()
            .expect("no panic");
        assert!(message.contains(words), "{message}");
        assert!(message.contains("; "), "no hint: {message}");
        for library in [
            "budget",
            "Depth",
            "Nodes",
            "from_str",
            "disallowed",
            "(used",
            "indicator",
            "recursion limit",
        ] {
            assert!(!message.contains(library), "{message}");
        }
        assert!(line > 0 && column > 0, "no position: {message}");
        if pos != (0, 0) {
            assert_eq!((line, column), pos, "{message}");
        }
    }
}
