//! Subject patterns in the style of NATS, used by watches and signals.
//!
//! A subject is split into tokens at `.`. In a pattern, `*` matches exactly one token and
//! `>` (only as the last token) matches one or more remaining tokens: `orders.*.created`
//! matches `orders.eu.created`; `orders.>` matches `orders.eu` and `orders.eu.created` but
//! not `orders`.

/// Whether `pattern` is well formed: non-empty tokens, `>` only at the end.
pub fn is_valid_pattern(pattern: &str) -> bool {
    let mut tokens = pattern.split('.').peekable();
    while let Some(t) = tokens.next() {
        if t.is_empty() || (t == ">" && tokens.peek().is_some()) {
            return false;
        }
        if t.len() > 1 && (t.contains('*') || t.contains('>')) {
            return false;
        }
    }
    true
}

/// Whether `subject` is a concrete subject: a valid pattern without wildcards.
pub fn is_valid_subject(subject: &str) -> bool {
    is_valid_pattern(subject) && !subject.split('.').any(|t| t == "*" || t == ">")
}

/// Whether `subject` matches `pattern` (both assumed valid).
pub fn matches(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for p in pattern.split('.') {
        if p == ">" {
            return subject_tokens.next().is_some();
        }
        match subject_tokens.next() {
            Some(s) if p == "*" || p == s => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_tokens() {
        assert!(matches("a.b", "a.b"));
        assert!(!matches("a.b", "a.b.c"));
        assert!(!matches("a.b.c", "a.b"));
        assert!(matches("a.*.c", "a.x.c"));
        assert!(!matches("a.*.c", "a.x.y.c"));
        assert!(matches("a.>", "a.b"));
        assert!(matches("a.>", "a.b.c"));
        assert!(!matches("a.>", "a"));
        assert!(matches(">", "anything.at.all"));
        assert!(matches("*", "one"));
        assert!(!matches("*", "one.two"));
    }

    #[test]
    fn malformed_patterns_are_refused() {
        assert!(is_valid_pattern("a.*.>"));
        assert!(!is_valid_pattern("a.>.b"));
        assert!(!is_valid_pattern("a..b"));
        assert!(!is_valid_pattern(""));
        assert!(!is_valid_pattern("a.b*"));
        assert!(is_valid_subject("a.b"));
        assert!(!is_valid_subject("a.*"));
    }
}
