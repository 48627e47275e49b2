//! The guard deduplication applies before merging two similar memories: a sentence
//! embedding model scores "Is allergic to peanuts" and "Is not allergic to peanuts"
//! (0.95 with all-MiniLM-L6-v2), "Pays 1200 euros rent" and "Pays 1500 euros rent"
//! (0.97), or "on 3 April 2027" and "on 3 April 2028" (0.98) as near copies. A pair
//! whose texts differ in polarity, in their numbers or in their dates is never a
//! duplicate, whatever its similarity.
//!
//! Pure, so every rule is tested on text alone.
//!
//! ```
//! use hippo_memory_tasks::guard::{Difference, difference};
//! assert_eq!(difference("Likes cilantro", "Doesn't like cilantro"), Some(Difference::Negation));
//! assert_eq!(difference("Has 2 cats", "Has three cats"), Some(Difference::Numbers));
//! assert_eq!(difference("Dentist on Monday", "Dentist on Thursday"), Some(Difference::Dates));
//! assert_eq!(difference("Loves hiking in the Alps", "Enjoys mountain hikes in the Alps"), None);
//! ```

use std::collections::BTreeSet;

/// Why two texts are not the same memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Difference {
    /// One is negated and the other is not.
    Negation,
    /// They state different numbers.
    Numbers,
    /// They name different months, days or holidays.
    Dates,
}

const NEGATIONS: &[&str] = &[
    "not", "no", "never", "nothing", "none", "nobody", "neither", "nor", "cannot", "without",
    "nowhere",
];

const NUMBER_WORDS: &[&str] = &[
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
    "thirty",
    "forty",
    "fifty",
    "sixty",
    "seventy",
    "eighty",
    "ninety",
    "hundred",
    "thousand",
    "million",
    "billion",
    "dozen",
    "once",
    "twice",
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "half",
];

const DATE_WORDS: &[&str] = &[
    "january",
    "february",
    "march",
    "april",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "weekday",
    "weekend",
    "weekends",
    "today",
    "tomorrow",
    "yesterday",
    "christmas",
    "easter",
    "hanukkah",
    "ramadan",
    "diwali",
    "thanksgiving",
    "halloween",
    "spring",
    "summer",
    "autumn",
    "fall",
    "winter",
];

/// Words of a text: letters, digits and apostrophes, with their original case.
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '’'))
        .filter(|w| !w.is_empty())
}

/// Whether the text is negated (an odd number of negations).
fn negated(text: &str) -> bool {
    let count = words(text)
        .filter(|w| {
            let w = w.to_lowercase();
            NEGATIONS.contains(&w.as_str()) || w.ends_with("n't") || w.ends_with("n’t")
        })
        .count();
    count % 2 == 1
}

/// The numbers a text states: digit runs (`7am` gives `7`) and number words.
fn numbers(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for w in words(text) {
        let lower = w.to_lowercase();
        if NUMBER_WORDS.contains(&lower.as_str()) {
            out.insert(lower.clone());
        }
        for run in lower.split(|c: char| !c.is_ascii_digit()) {
            if !run.is_empty() {
                out.insert(run.trim_start_matches('0').to_string());
            }
        }
    }
    out
}

/// The months, days and holidays a text names ("May" only capitalised: "may" is a
/// verb).
fn dates(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for w in words(text) {
        let lower = w.to_lowercase();
        if DATE_WORDS.contains(&lower.as_str()) || w == "May" {
            out.insert(lower);
        }
    }
    out
}

/// Levenshtein distance of two short words.
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Whether the word sets differ by more than a typo: a word of one side that the
/// other lacks counts unless the other text has a word one or two edits from it
/// ("yestrday" is "yesterday"; digits must match exactly).
fn differ(mine: &BTreeSet<String>, theirs: &BTreeSet<String>, their_text: &str) -> bool {
    mine.difference(theirs).any(|w| {
        w.chars().any(|c| c.is_ascii_digit())
            || !words(their_text).any(|o| {
                let o = o.to_lowercase();
                o.len() >= 4 && edits(w, &o) <= if w.len() >= 7 { 2 } else { 1 }
            })
    })
}

/// Why `a` and `b` must not be merged, or `None` when nothing tells them apart.
pub fn difference(a: &str, b: &str) -> Option<Difference> {
    let apart = |x: &BTreeSet<String>, y: &BTreeSet<String>| differ(x, y, b) || differ(y, x, a);
    if negated(a) != negated(b) {
        Some(Difference::Negation)
    } else if apart(&numbers(a), &numbers(b)) {
        Some(Difference::Numbers)
    } else if apart(&dates(a), &dates(b)) {
        Some(Difference::Dates)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negations() {
        for (a, b) in [
            ("I like cilantro.", "I don't like cilantro."),
            ("Can swim.", "Cannot swim."),
            (
                "Wants to move to Berlin.",
                "No longer wants to move to Berlin.",
            ),
            ("Has a driving licence.", "Has no driving licence."),
        ] {
            assert_eq!(difference(a, b), Some(Difference::Negation), "{a} / {b}");
        }
        assert_eq!(
            difference(
                "Does not eat meat on weekdays.",
                "does not eat meat on weekdays!"
            ),
            None
        );
        assert_eq!(difference("Isn't it not fine?", "It is fine"), None);
    }

    #[test]
    fn numbers_and_dates() {
        assert_eq!(
            difference("My flight leaves at 7am.", "My flight leaves at 9am."),
            Some(Difference::Numbers)
        );
        assert_eq!(
            difference("Her room number is 305.", "Her room number is 503."),
            Some(Difference::Numbers)
        );
        assert_eq!(difference("Runs 05 km", "Runs 5 km"), None);
        assert_eq!(
            difference("Birthday is May 3.", "Birthday is June 3."),
            Some(Difference::Dates)
        );
        assert_eq!(
            difference("Visits at Christmas.", "Visits at Easter."),
            Some(Difference::Dates)
        );
        assert_eq!(difference("She may come", "She might come"), None);
        // a typo is not another date
        assert_eq!(
            difference("Met her yesterday evening", "Met her yestrday evening"),
            None
        );
        assert_eq!(difference("On Thursday", "On Thrsday"), None);
        assert_eq!(difference("Has three cats", "Has thre cats"), None);
        assert_eq!(edits("kitten", "sitting"), 3);
        assert_eq!(
            difference(
                "Gets up at six every morning.",
                "Wakes up at six each morning."
            ),
            None
        );
    }
}
