//! Text helpers of the channels.

/// At most `max` characters of `s`, an ellipsis ending a cut one.
pub(crate) fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn cuts_by_characters() {
        assert_eq!(super::cut("abc", 3), "abc");
        assert_eq!(super::cut("abcd", 3), "ab…");
        assert_eq!(super::cut("ééé", 2), "é…");
    }
}
