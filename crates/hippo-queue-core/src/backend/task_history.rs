//! Task history: the stored task records, newest first, paged by a cursor, for
//! monitors that keep no state of their own.
//!
//! A page is ordered by the time a record was last written, newest first (on Redis,
//! by the record's expiry deadline, which is the same order while every record has
//! the same lifetime). A record that expired or was forgotten is not listed. The
//! cursor is opaque: pass the one a page returned to get the page after it.

use async_trait::async_trait;

use super::BackendError;
use crate::result::TaskMeta;

/// One page of [`TaskHistory::task_history`].
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct HistoryPage {
    /// The records, newest first. May hold fewer than asked for even when more
    /// follow: go on while [`HistoryPage::next`] is `Some`.
    pub tasks: Vec<TaskMeta>,
    /// The cursor of the page after this one; `None` at the end of the history.
    pub next: Option<String>,
}

impl HistoryPage {
    /// A page of `tasks` followed by the cursor `next`.
    pub fn new(tasks: Vec<TaskMeta>, next: Option<String>) -> Self {
        HistoryPage { tasks, next }
    }
}

/// Lists stored task records, newest first.
#[async_trait]
pub trait TaskHistory: Send + Sync + 'static {
    /// Up to `count` records after `cursor` (from the newest when `None`), and the
    /// cursor to go on from. An invalid cursor is [`BackendError`] naming it.
    async fn task_history(
        &self,
        cursor: Option<&str>,
        count: usize,
    ) -> Result<HistoryPage, BackendError>;
}

/// A history position, `<score>:<id>`: pages go on with entries ordered after it by
/// (score descending, id descending).
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryCursor {
    /// The score of the last entry returned (ms).
    pub score: u64,
    /// The id of the last entry returned.
    pub id: String,
}

impl HistoryCursor {
    /// Reads a cursor written by [`HistoryCursor::encode`].
    pub fn parse(s: &str) -> Result<Self, BackendError> {
        let bad = || BackendError::backend(format!("invalid task history cursor {s:?}"));
        let (score, id) = s.split_once(':').ok_or_else(bad)?;
        Ok(HistoryCursor {
            score: score.parse().map_err(|_| bad())?,
            id: id.to_string(),
        })
    }

    /// The cursor as text.
    pub fn encode(&self) -> String {
        format!("{}:{}", self.score, self.id)
    }

    /// Whether the entry (`score`, `id`) comes after this cursor in history order.
    pub fn is_before(&self, score: u64, id: &str) -> bool {
        score < self.score || (score == self.score && id < self.id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_orders_ties_by_id() {
        let c = HistoryCursor::parse("1700:abc:def").unwrap();
        assert_eq!(c.score, 1700);
        assert_eq!(c.id, "abc:def");
        assert_eq!(HistoryCursor::parse(&c.encode()).unwrap(), c);
        assert!(c.is_before(1699, "zzz"));
        assert!(c.is_before(1700, "abc"));
        assert!(!c.is_before(1700, "abc:def"));
        assert!(!c.is_before(1701, "a"));
        assert!(HistoryCursor::parse("nope").is_err());
        assert!(HistoryCursor::parse("x:id").is_err());
    }
}
