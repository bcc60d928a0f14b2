//! The credentials of an `Authorization` header, by scheme.

/// The credentials after `scheme` in an `Authorization` value: the scheme
/// matched without regard to case (RFC 9110 §11.1), then one or more spaces.
pub(crate) fn credentials<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = value.split_once(' ')?;
    given
        .eq_ignore_ascii_case(scheme)
        .then(|| rest.trim_start_matches(' '))
}

#[cfg(test)]
mod tests {
    use super::credentials;

    #[test]
    fn the_scheme_is_matched_without_regard_to_case() {
        for value in ["Basic abc", "basic abc", "BASIC abc", "bAsIc  abc"] {
            assert_eq!(credentials(value, "Basic"), Some("abc"), "{value}");
        }
        assert_eq!(credentials("Bearer t", "Basic"), None);
        assert_eq!(credentials("Basicabc", "Basic"), None);
        assert_eq!(credentials("Basic", "Basic"), None);
        assert_eq!(credentials("bearer tok", "Bearer"), Some("tok"));
    }
}
