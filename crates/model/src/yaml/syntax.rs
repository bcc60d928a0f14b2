//! hookflow's own words for what the YAML parser finds wrong in a file's
//! text: each message says what is wrong and how to fix it, and none is the
//! parser's wording (SPEC §1). The position is reported separately.
//!
//! The parser's errors are matched by kind where the kind is known, so a
//! change of its wording cannot let that wording through; text is only
//! looked at for the rest, and such messages still get a hint.

use granit_parser::ErrorKind;
use serde_saphyr::budget::BudgetBreach;
use serde_saphyr::{Error, ExternalMessageSource};

/// The deepest nesting of mappings and lists a file may have (the parser's
/// default budget, which hookflow keeps).
const MAX_DEPTH: usize = 64;

pub(super) const TAB: &str = "a tab cannot indent YAML; indent with spaces";
pub(super) const TAB_IN_VALUE: &str =
    "a tab cannot be here; use spaces, or put the value in quotes";
const ALIASES: &str = "the file expands YAML aliases (`*name`) too often; write the values out";
const GENERIC_HINT: &str = "check the indentation, brackets and quotes here";

/// The error in hookflow's words.
pub(super) fn message(e: &Error) -> String {
    by_kind(innermost(e)).unwrap_or_else(|| by_text(&e.to_string()))
}

/// The error an alias or snippet wrapper holds.
fn innermost(mut e: &Error) -> &Error {
    while let Error::AliasError { error, .. } | Error::WithSnippet { error, .. } = e {
        e = error;
    }
    e
}

fn by_kind(e: &Error) -> Option<String> {
    let text = match e {
        Error::Budget { breach, .. } => return Some(budget(breach)),
        Error::MultipleDocuments { .. } => "a second YAML document (after a `---` line) starts \
             here, and a file holds one; remove that `---` line and what follows it, or move \
             that to its own file"
            .to_string(),
        Error::AliasReplayCounterOverflow { .. }
        | Error::AliasReplayLimitExceeded { .. }
        | Error::AliasExpansionLimitExceeded { .. }
        | Error::AliasReplayStackDepthExceeded { .. } => ALIASES.to_string(),
        Error::UnknownAnchor { .. } => {
            "this alias (`*name`) refers to no anchor (`&name`) written before it; \
             define the anchor first, or write the value"
                .to_string()
        }
        Error::MergeKeyNotAllowed { .. } | Error::MergeValueNotMapOrSeqOfMaps { .. } => {
            "YAML merge keys (`<<`) are not supported here; write the fields out".to_string()
        }
        Error::Eof { .. } => {
            format!("the file ends in the middle of a value; {GENERIC_HINT}")
        }
        Error::InvalidUtf8Input => "the file is not UTF-8 text; save it as UTF-8".to_string(),
        Error::ExternalMessage { source, .. } => match source.as_ref() {
            ExternalMessageSource::Parser(scan) => return scan_kind(scan.kind()),
            _ => return None,
        },
        _ => return None,
    };
    Some(text)
}

fn budget(breach: &BudgetBreach) -> String {
    match breach {
        BudgetBreach::Depth { .. } => format!(
            "mappings and lists are nested too deeply here (more than {MAX_DEPTH} levels); \
             nest fewer `then:`/`else:` branches, for example by joining conditions with \
             `and`/`or`"
        ),
        // The parser's default budget of 250,000 nodes, which hookflow keeps.
        BudgetBreach::Nodes { .. } | BudgetBreach::Events { .. } => {
            "the file has too many values (more than 250,000, counting every use of an \
             alias `*name` as a copy); make it smaller, or write fewer aliases"
                .to_string()
        }
        BudgetBreach::Aliases { .. }
        | BudgetBreach::Anchors { .. }
        | BudgetBreach::AliasAnchorRatio { .. } => ALIASES.to_string(),
        BudgetBreach::Documents { .. } => {
            "the file holds too many YAML documents (`---`); a file holds one".to_string()
        }
        BudgetBreach::MergeKeys { .. } => {
            "YAML merge keys (`<<`) are not supported here; write the fields out".to_string()
        }
        _ => "the file is too large to read; make it smaller".to_string(),
    }
}

fn scan_kind(kind: &ErrorKind) -> Option<String> {
    let text = match kind {
        ErrorKind::TabInBlockIndentation
        | ErrorKind::TabInIndentation
        | ErrorKind::TabNotAllowed => TAB.to_string(),
        ErrorKind::TabAtBlockScalarStart => {
            "a `|` or `>` block cannot start with a tab; indent its lines with spaces".to_string()
        }
        ErrorKind::TabInPlainScalar => TAB_IN_VALUE.to_string(),
        ErrorKind::RecursionLimitExceeded => {
            "brackets `[` and `{` are nested too deeply here; flatten the value".to_string()
        }
        ErrorKind::InvalidColonPlacement => {
            "a `:` cannot be here; a `[` or `{` opened before it may not be closed, \
             or a value that holds `: ` must be put in quotes"
                .to_string()
        }
        ErrorKind::UnclosedFlowCollection { open } => format!(
            "the `{open}` opened here is not closed; add the matching `{}`",
            closing(*open)
        ),
        ErrorKind::MismatchedFlowCollectionEnd { open, close } => format!(
            "a `{open}` is closed by `{close}`; close it with `{}`",
            closing(*open)
        ),
        ErrorKind::MisplacedFlowCollectionEnd => {
            "this `]` or `}` closes nothing; remove it, or put the value in quotes".to_string()
        }
        ErrorKind::UnclosedQuotedScalar => {
            "the quote opened here is not closed; add the closing quote".to_string()
        }
        ErrorKind::MappingValueNotAllowed => "a `key: value` is not allowed here; check this \
             line's indentation, or quote a value that contains `: `"
            .to_string(),
        ErrorKind::InvalidIndentation => {
            "this line is not indented like the lines around it; line it up with the \
             other fields of its mapping or items of its list"
                .to_string()
        }
        _ => return None,
    };
    Some(text)
}

fn closing(open: char) -> char {
    match open {
        '{' => '}',
        _ => ']',
    }
}

/// A message not matched by kind: known wordings get hookflow's words, any
/// other the parser's first line without positions and library advice,
/// followed by a hint.
fn by_text(s: &str) -> String {
    let line = s.lines().next().unwrap_or(s).trim();
    let line = line.strip_prefix("error: ").unwrap_or(line);
    // serde-saphyr may prefix "line L column C: ".
    let line = match line.find(": ") {
        Some(i) if line.starts_with("line ") => &line[i + 2..],
        _ => line,
    };
    let line = without_position(line);
    const OWN_WORDS: &[(&str, &str)] = &[
        (
            "merge key",
            "YAML merge keys (`<<`) are not supported here; write the fields out",
        ),
        (
            "!!binary",
            "`!!binary` values are not supported; write the text itself",
        ),
        ("alias replay", ALIASES),
        ("alias expansion", ALIASES),
        (
            "unknown anchor",
            "this alias (`*name`) refers to no anchor (`&name`) written before it; \
             define the anchor first, or write the value",
        ),
        (
            "scalar mapping key",
            "a mapping or list cannot be a key; a value that starts with `{` \
             (such as a template `{{ … }}`) must be quoted: \"{{ … }}\"",
        ),
        ("tab", TAB),
        (
            "mapping values are not allowed",
            "a `key: value` is not allowed here; check this line's indentation, \
             or quote a value that contains `: `",
        ),
        (
            "duplicate mapping key",
            "duplicate key in this mapping; remove one of them",
        ),
    ];
    if let Some((_, own)) = OWN_WORDS.iter().find(|(needle, _)| line.contains(needle)) {
        return own.to_string();
    }
    // Advice about the library's options or functions is not for authors.
    let line = [", set ", "; use ", "; set "]
        .iter()
        .filter_map(|cut| line.find(cut))
        .min()
        .map_or(line, |i| &line[..i]);
    let line = line.trim_end_matches([';', ',', ' ']);
    format!("{line}; {GENERIC_HINT}")
}

/// `text` cut before its first " at line L, column C" (and what follows it:
/// more positions, such as an alias's "(defined at …)").
fn without_position(text: &str) -> &str {
    for (i, _) in text.match_indices(" at line ") {
        let rest = &text[i + " at line ".len()..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && rest[digits..].starts_with(", column ") {
            return &text[..i];
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_cut_whole_and_library_advice_dropped() {
        assert_eq!(
            without_position(
                "budget breached: Nodes at line 4, column 34 (defined at line 8, column 11) (used"
            ),
            "budget breached: Nodes"
        );
        assert_eq!(
            without_position("a value at line start, at line 2, column 3"),
            "a value at line start,"
        );
        let m =
            by_text("line 3 column 1: something odd; use from_str_multiple at line 3, column 1");
        assert_eq!(m, format!("something odd; {GENERIC_HINT}"));
    }
}
