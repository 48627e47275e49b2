//! The labelled deduplication evaluation set (`data/dedup_eval.tsv`) and its score:
//! precision and recall per kind of pair for an embedder at a threshold, with the
//! same decision deduplication makes ([`is_duplicate`]).
//!
//! Kinds: `exact`, `near` (case, punctuation, a typo, a filler word), `paraphrase`,
//! `reordered` (the same clauses in another order) are duplicates; the hard
//! negatives `topic` (same topic, another fact), `negation`, `numbers`, `dates` and
//! `people` are not. The bench `dedup_eval` prints the table for each embedder.
//!
//! ```
//! use hippo_memory_tasks::eval::{EVAL_SET, parse};
//! let cases = parse(EVAL_SET)?;
//! assert!(cases.iter().any(|c| c.kind == "negation" && !c.same));
//! # Ok::<(), String>(())
//! ```

use crate::embed::{EmbedError, Embedder};
use crate::guard::difference;
use crate::similarity::{dot, normalize};

/// The set, as shipped with the crate.
pub const EVAL_SET: &str = include_str!("../data/dedup_eval.tsv");

/// One labelled pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// Its kind (`exact`, `paraphrase`, `negation`, ...).
    pub kind: String,
    /// Whether the two texts are one memory.
    pub same: bool,
    /// The first text.
    pub a: String,
    /// The second text.
    pub b: String,
}

/// Reads the set: `kind<TAB>same<TAB>a<TAB>b` lines, `#` comments.
pub fn parse(tsv: &str) -> Result<Vec<Case>, String> {
    let mut out = Vec::new();
    for (n, line) in tsv.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        let [kind, same, a, b] = f.as_slice() else {
            return Err(format!("line {}: expected 4 tab-separated fields", n + 1));
        };
        let same = match *same {
            "1" => true,
            "0" => false,
            other => return Err(format!("line {}: same is {other:?}, not 0 or 1", n + 1)),
        };
        out.push(Case {
            kind: kind.to_string(),
            same,
            a: a.to_string(),
            b: b.to_string(),
        });
    }
    Ok(out)
}

/// Deduplication's decision for a pair: similarity strictly above the threshold and
/// no [`difference`] between the texts.
pub fn is_duplicate(a: &str, b: &str, similarity: f32, threshold: f32) -> bool {
    similarity > threshold && difference(a, b).is_none()
}

/// The score of one kind.
#[derive(Debug, Clone, PartialEq)]
pub struct KindScore {
    /// The kind.
    pub kind: String,
    /// Whether its pairs are duplicates.
    pub same: bool,
    /// Pairs.
    pub pairs: usize,
    /// Pairs merged.
    pub merged: usize,
    /// Pairs whose similarity alone was above the threshold but the guard kept apart.
    pub guarded: usize,
    /// Mean similarity.
    pub mean_similarity: f32,
}

impl KindScore {
    /// Merged share: recall for duplicate kinds, the false-merge rate for the others.
    pub fn merged_share(&self) -> f64 {
        self.merged as f64 / self.pairs.max(1) as f64
    }
}

/// The score of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The embedder's model.
    pub model: String,
    /// The threshold.
    pub threshold: f32,
    /// Per kind, in the order of the set.
    pub kinds: Vec<KindScore>,
}

impl Report {
    /// Merged duplicates over all merged pairs.
    pub fn precision(&self) -> f64 {
        let merged: usize = self.kinds.iter().map(|k| k.merged).sum();
        let right: usize = self.kinds.iter().filter(|k| k.same).map(|k| k.merged).sum();
        right as f64 / merged.max(1) as f64
    }

    /// Merged duplicates over all duplicates.
    pub fn recall(&self) -> f64 {
        let dups: usize = self.kinds.iter().filter(|k| k.same).map(|k| k.pairs).sum();
        let right: usize = self.kinds.iter().filter(|k| k.same).map(|k| k.merged).sum();
        right as f64 / dups.max(1) as f64
    }

    /// The kind's score.
    pub fn kind(&self, kind: &str) -> Option<&KindScore> {
        self.kinds.iter().find(|k| k.kind == kind)
    }

    /// Hard negatives merged.
    pub fn negatives_merged(&self) -> usize {
        self.kinds
            .iter()
            .filter(|k| !k.same)
            .map(|k| k.merged)
            .sum()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} at threshold {:.2}", self.model, self.threshold)?;
        writeln!(
            f,
            "  {:<11} {:>5} {:>6} {:>7} {:>8} {:>9}",
            "kind", "pairs", "merged", "guarded", "mean cos", "recall"
        )?;
        for k in &self.kinds {
            let share = if k.same {
                format!("{:.2}", k.merged_share())
            } else {
                format!("({:.2})", k.merged_share())
            };
            writeln!(
                f,
                "  {:<11} {:>5} {:>6} {:>7} {:>8.3} {:>9}",
                k.kind, k.pairs, k.merged, k.guarded, k.mean_similarity, share
            )?;
        }
        write!(
            f,
            "  precision {:.3}, recall {:.3}, hard negatives merged {} (in brackets: the merged share of a negative kind)",
            self.precision(),
            self.recall(),
            self.negatives_merged()
        )
    }
}

/// Scores an embedder on the cases at a threshold.
pub async fn score(
    cases: &[Case],
    embedder: &dyn Embedder,
    threshold: f32,
) -> Result<Report, EmbedError> {
    let texts: Vec<String> = cases
        .iter()
        .flat_map(|c| [c.a.clone(), c.b.clone()])
        .collect();
    let mut vectors = embedder.embed(&texts).await?;
    for v in &mut vectors {
        normalize(v);
    }
    let mut kinds: Vec<KindScore> = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let sim = dot(&vectors[2 * i], &vectors[2 * i + 1]);
        let merged = is_duplicate(&c.a, &c.b, sim, threshold);
        let pos = match kinds.iter().position(|k| k.kind == c.kind) {
            Some(p) => p,
            None => {
                kinds.push(KindScore {
                    kind: c.kind.clone(),
                    same: c.same,
                    pairs: 0,
                    merged: 0,
                    guarded: 0,
                    mean_similarity: 0.0,
                });
                kinds.len() - 1
            }
        };
        let k = &mut kinds[pos];
        k.pairs += 1;
        k.merged += usize::from(merged);
        k.guarded += usize::from(sim > threshold && !merged);
        k.mean_similarity += sim;
    }
    for k in &mut kinds {
        k.mean_similarity /= k.pairs.max(1) as f32;
    }
    Ok(Report {
        model: embedder.model().to_string(),
        threshold,
        kinds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_set_has_every_kind() {
        let cases = parse(EVAL_SET).unwrap();
        for kind in [
            "exact",
            "near",
            "paraphrase",
            "reordered",
            "topic",
            "negation",
            "numbers",
            "dates",
            "people",
        ] {
            let n = cases.iter().filter(|c| c.kind == kind).count();
            assert!(n >= 10, "{kind}: {n} pairs");
        }
        assert!(parse("a\t2\tx\ty").is_err());
    }
}
