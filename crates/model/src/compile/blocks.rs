//! Where a template's syntax error is in the file when the template is a
//! block scalar: a literal `|` block's lines are the template's lines; a
//! folded `>` block joins them, so the engine's line number says nothing
//! and the block is read again with its lines kept.

use crate::yaml::Pos;

/// Where line `line` (1-based) of a literal block scalar's content is in
/// the file, when the value at `pos` is one: the column is the line's first
/// non-blank.
pub(super) fn literal_line(text: &str, pos: Pos, line: usize) -> Option<Pos> {
    let first = first_content(text, pos, '|')?;
    content_pos(text, first + line.checked_sub(1)?)
}

/// A folded block scalar's content as written, its lines kept (each less
/// the block's indentation), and the index of its first line in the file,
/// when the value at `pos` is one. Inside `{{ }}` and `{% %}` a line break
/// is whitespace like the space folding puts there, so the engine finds a
/// syntax error in this text on the line the author wrote it.
pub(super) fn folded(text: &str, pos: Pos) -> Option<(usize, String)> {
    let first = first_content(text, pos, '>')?;
    let lines: Vec<&str> = text.lines().skip(first).collect();
    let head = lines.first()?;
    let indent = head.len() - head.trim_start().len();
    let mut kept = Vec::new();
    for line in lines {
        let blank = line.trim().is_empty();
        if !blank && line.len() - line.trim_start().len() < indent {
            break;
        }
        kept.push(line.get(indent..).unwrap_or_default());
    }
    Some((first, kept.join("\n")))
}

/// The position of line `index` (0-based) of the file, at its first non-blank.
pub(super) fn content_pos(text: &str, index: usize) -> Option<Pos> {
    let content = text.lines().nth(index)?;
    let first = content.len() - content.trim_start().len();
    Some(Pos {
        line: u32::try_from(index + 1).ok()?,
        column: u32::try_from(first + 1).ok()?,
    })
}

/// The index of the first content line of the block scalar at `pos` whose
/// indicator is `indicator` (`|` or `>`), when the value is one.
fn first_content(text: &str, pos: Pos, indicator: char) -> Option<usize> {
    let at = usize::try_from(pos.line).ok()?.checked_sub(1)?;
    let column = usize::try_from(pos.column).ok()?.checked_sub(1)?;
    let here = text.lines().nth(at)?;
    let block = |l: &str| {
        // `key: |`, `- >-`, `|2+`: the indicator and its modifiers end the line.
        let end = l
            .trim_end()
            .trim_end_matches(|c: char| c.is_ascii_digit() || c == '-' || c == '+');
        end.ends_with(indicator)
    };
    // The parser places a block scalar at its indicator or at its content
    // (then its header is the line before, less indented than the content).
    let indent = |l: &str| l.len() - l.trim_start().len();
    match here.get(column..)?.chars().next()? {
        c if c == indicator && block(here) => Some(at + 1),
        _ if at > 0 => {
            let header = text.lines().nth(at - 1)?;
            (block(header) && indent(header) < column).then_some(at)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folded_block_is_read_with_its_lines() {
        let text = "a:\n  message: >-\n    one {{ x\n      }}\n\n    two\nb: 1\n";
        let at = Pos {
            line: 2,
            column: 12,
        };
        assert_eq!(
            folded(text, at),
            Some((2, "one {{ x\n  }}\n\ntwo".to_string()))
        );
        // Not a literal block, and a literal block is not folded.
        assert_eq!(literal_line(text, at, 1), None);
        let literal = text.replace('>', "|");
        assert_eq!(folded(&literal, at), None);
        assert_eq!(
            literal_line(&literal, at, 2),
            Some(Pos { line: 4, column: 7 })
        );
    }
}
