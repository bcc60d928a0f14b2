//! "Did you mean …?": the known names closest to a misspelled one.

/// The candidates close enough to `name` to be a likely typo of it: the
/// closest ones (at most three).
pub fn close_names<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    // Half a short name is no typo of it (`date` is not `safe`, `upcase`
    // not `escape`).
    let limit = match name.chars().count() {
        0..=4 => 1,
        5..=7 => 2,
        _ => 3,
    };
    let mut scored: Vec<(usize, &str)> = candidates
        .into_iter()
        .filter(|c| *c != name)
        .map(|c| (distance(&name.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .collect();
    scored.sort();
    scored.dedup();
    let best = scored.first().map_or(0, |(d, _)| *d);
    scored
        .into_iter()
        .take_while(|(d, _)| *d == best)
        .take(3)
        .map(|(_, c)| c)
        .collect()
}

/// `; did you mean `a`?` (or `` `a` or `b` ``), empty when nothing is close.
pub fn did_you_mean(close: &[&str], prefix: &str) -> String {
    match close {
        [] => String::new(),
        [one] => format!("; did you mean `{prefix}{one}`?"),
        many => {
            let names: Vec<String> = many.iter().map(|c| format!("`{prefix}{c}`")).collect();
            format!("; did you mean {}?", names.join(" or "))
        }
    }
}

/// Edit distance counting an exchange of two neighbouring characters as one
/// edit (`stauts` → `status` is one).
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_their_names() {
        assert_eq!(
            close_names("trade_stauts", ["trade_status", "order_id"]),
            vec!["trade_status"]
        );
        assert_eq!(close_names("rond", ["round", "trim", "int"]), vec!["round"]);
        assert_eq!(close_names("levle", ["level", "message"]), vec!["level"]);
        assert!(close_names("colour", ["title", "trigger", "nodes"]).is_empty());
        assert_eq!(distance("ab", "ba"), 1);
        assert_eq!(
            did_you_mean(&["a", "b"], "x."),
            "; did you mean `x.a` or `x.b`?"
        );
        assert_eq!(did_you_mean(&[], ""), "");
    }
}
