//! The heuristics used when no language model answers: first sentences, filler-word
//! removal and word-budget cuts, and rule-text normalisation.

/// Words dropped by [`compress_words`]: hesitation sounds, which never carry
/// meaning. Words such as *like*, *so*, *really*, *just* or *well* are not here: in
/// "I don't like cilantro" or "really hates flying" they are the fact.
pub const FILLER_WORDS: &[&str] = &["um", "umm", "uh", "uhm", "erm", "er", "hmm", "mhm"];

/// The first sentence of a text (up to and including the first `.`, `!` or `?`
/// followed by a space or the end), trimmed.
///
/// ```
/// use hippo_memory_tasks::text::first_sentence;
/// assert_eq!(first_sentence("Met Ana in Lisbon. She likes jazz."), "Met Ana in Lisbon.");
/// assert_eq!(first_sentence("v1.2 shipped today"), "v1.2 shipped today");
/// ```
pub fn first_sentence(text: &str) -> &str {
    let t = text.trim();
    let mut chars = t.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if matches!(c, '.' | '!' | '?') {
            match chars.peek() {
                None => return t,
                Some((_, n)) if n.is_whitespace() => return &t[..i + c.len_utf8()],
                _ => {}
            }
        }
    }
    t
}

/// The heuristic summary: the first sentence of each text, joined.
pub fn join_first_sentences(texts: &[String]) -> String {
    texts
        .iter()
        .map(|t| {
            let s = first_sentence(t);
            if s.ends_with(['.', '!', '?']) {
                s.to_string()
            } else {
                format!("{s}.")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn is_filler(word: &str) -> bool {
    let bare: String = word
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect();
    !bare.is_empty() && FILLER_WORDS.contains(&bare.as_str())
}

/// The heuristic compression: drops [`FILLER_WORDS`], then keeps the first
/// `ceil(ratio * words)` words of the original word count (at least one). Lossy: the
/// compression task keeps the original beside it ([`history`](crate::history)).
///
/// ```
/// use hippo_memory_tasks::text::compress_words;
/// let t = "um I really like very strong black coffee every single morning";
/// assert_eq!(compress_words(t, 0.5), "I really like very strong black");
/// assert_eq!(compress_words(t, 1.0), "I really like very strong black coffee every single morning");
/// ```
pub fn compress_words(text: &str, ratio: f64) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let budget = ((words.len() as f64 * ratio.clamp(0.0, 1.0)).ceil() as usize).max(1);
    let kept: Vec<&str> = words.iter().copied().filter(|w| !is_filler(w)).collect();
    let kept = if kept.is_empty() { words } else { kept };
    kept.into_iter().take(budget).collect::<Vec<_>>().join(" ")
}

/// The sentences of a text (split after `.`, `!`, `?` or `;` followed by a space),
/// trimmed, without their final punctuation.
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let at_break = matches!(c, '.' | '!' | '?' | ';')
            && chars.peek().is_none_or(|(_, n)| n.is_whitespace());
        if at_break {
            out.push(&text[start..i]);
            start = i + c.len_utf8();
        }
    }
    out.push(&text[start..]);
    out.into_iter()
        .map(|s| s.trim().trim_end_matches(['.', '!', '?', ';']).trim())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The heuristic merge of related memories: every distinct sentence of the texts,
/// in order (a sentence repeated with other case or punctuation counts once), so
/// nothing any of them says is lost.
///
/// ```
/// use hippo_memory_tasks::text::merge_distinct_sentences;
/// let texts = ["Alice's birthday is May 3".to_string(),
///              "alice's birthday is May 3; she loves tulips.".to_string()];
/// assert_eq!(merge_distinct_sentences(&texts), "Alice's birthday is May 3. she loves tulips.");
/// ```
pub fn merge_distinct_sentences(texts: &[String]) -> String {
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<String> = Vec::new();
    for t in texts {
        for s in sentences(t) {
            if seen.insert(crate::embed::normalize_text(s)) {
                out.push(format!("{s}."));
            }
        }
    }
    out.join(" ")
}

/// Number of whitespace-separated words.
pub fn word_count(text: &str) -> usize {
    text.split_whitespace().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences() {
        assert_eq!(first_sentence("  Hello there!  More. "), "Hello there!");
        assert_eq!(first_sentence(""), "");
        assert_eq!(
            join_first_sentences(&["A b. C".into(), "no stop".into()]),
            "A b. no stop."
        );
    }

    #[test]
    fn compression_keeps_at_least_one_word() {
        assert_eq!(compress_words("really", 0.25), "really");
        assert_eq!(compress_words("one two three four", 0.25), "one");
        assert_eq!(compress_words("", 0.5), "");
    }
}
