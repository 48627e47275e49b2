//! [`RedisBackend`]: the [`TaskHistory`] capability.
//!
//! Each result shard keeps an index of its records (`<prefix>:r:{<shard>}:history`,
//! id -> expiry deadline ms, written by `store_results.lua`). A page merges the shards
//! newest first in two round trips: one reads the head of every shard's index below
//! the cursor, the other the records. Each shard is read only a few entries deep, so
//! a page is correct only down to the *frontier*: the highest last entry among the
//! shards that had more below. Entries below the frontier wait for the next page.

use async_trait::async_trait;
use hippo_queue_core::BackendError;
use hippo_queue_core::backend::TaskHistory;
use hippo_queue_core::backend::task_history::{HistoryCursor, HistoryPage};

use crate::backend::RedisBackend;

/// Fewest index entries read from each shard per page.
const MIN_PER_SHARD: usize = 8;

/// An index entry: (score, id).
type Entry = (u64, String);

/// How deep to read each of `shards` shards for a page of `count`: twice the even
/// share, so that a page is rarely cut short by the frontier.
fn per_shard(count: usize, shards: usize) -> usize {
    (count.saturating_mul(2) / shards.max(1) + 1).max(MIN_PER_SHARD)
}

/// Merges the entries read: `ties` (every entry at the cursor's score, after it) and,
/// per shard, the head below the cursor with whether the shard had more (`full`).
/// Returns up to `count` entries in history order and whether more follow.
fn merge(ties: Vec<Entry>, heads: Vec<(Vec<Entry>, bool)>, count: usize) -> (Vec<Entry>, bool) {
    let frontier = heads
        .iter()
        .filter(|(head, full)| *full && !head.is_empty())
        .filter_map(|(head, _)| head.last().cloned())
        .max();
    let mut all: Vec<Entry> = ties
        .into_iter()
        .chain(heads.into_iter().flat_map(|(head, _)| head))
        .filter(|e| frontier.as_ref().is_none_or(|f| e >= f))
        .collect();
    all.sort_by(|a, b| b.cmp(a));
    let more = all.len() > count || frontier.is_some();
    all.truncate(count);
    (all, more)
}

fn entries(raw: Vec<(String, f64)>) -> Vec<Entry> {
    raw.into_iter()
        .map(|(id, score)| (score.max(0.0) as u64, id))
        .collect()
}

#[async_trait]
impl TaskHistory for RedisBackend {
    async fn task_history(
        &self,
        cursor: Option<&str>,
        count: usize,
    ) -> Result<HistoryPage, BackendError> {
        let cursor = cursor.map(HistoryCursor::parse).transpose()?;
        if count == 0 {
            return Ok(HistoryPage::new(Vec::new(), cursor.map(|c| c.encode())));
        }
        let g = &self.inner.global;
        let shards = g.shards();
        let depth = per_shard(count, shards as usize);
        let mut pipe = redis::pipe();
        for shard in 0..shards {
            let key = g.history_of_shard(shard);
            match &cursor {
                Some(c) => {
                    pipe.cmd("ZRANGEBYSCORE")
                        .arg(&key)
                        .arg(c.score)
                        .arg(c.score)
                        .arg("WITHSCORES");
                    pipe.cmd("ZREVRANGEBYSCORE")
                        .arg(&key)
                        .arg(format!("({}", c.score))
                        .arg("-inf")
                        .arg("WITHSCORES")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(depth);
                }
                None => {
                    pipe.cmd("ZREVRANGEBYSCORE")
                        .arg(&key)
                        .arg("+inf")
                        .arg("-inf")
                        .arg("WITHSCORES")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(depth);
                }
            }
        }
        let replies: Vec<Vec<(String, f64)>> = self.inner.results.query(&pipe).await?;
        let mut ties = Vec::new();
        let mut heads = Vec::with_capacity(shards as usize);
        let mut replies = replies.into_iter();
        for _ in 0..shards {
            if let Some(c) = &cursor {
                let at = entries(replies.next().unwrap_or_default());
                ties.extend(at.into_iter().filter(|(s, id)| c.is_before(*s, id)));
            }
            let head = entries(replies.next().unwrap_or_default());
            let full = head.len() >= depth;
            heads.push((head, full));
        }
        let (page, more) = merge(ties, heads, count);
        let next = match page.last() {
            Some((score, id)) if more => Some(
                HistoryCursor {
                    score: *score,
                    id: id.clone(),
                }
                .encode(),
            ),
            _ => None,
        };
        if page.is_empty() {
            return Ok(HistoryPage::new(Vec::new(), next));
        }
        let mut pipe = redis::pipe();
        for (_, id) in &page {
            pipe.get(g.result(id));
        }
        let values: Vec<Option<Vec<u8>>> = self.inner.results.query(&pipe).await?;
        let mut tasks = Vec::with_capacity(page.len());
        for value in values {
            // expired or forgotten since it was indexed: not listed
            if let Some(meta) = self.decode_stored(value)? {
                tasks.push(meta);
            }
        }
        Ok(HistoryPage::new(tasks, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(score: u64, id: &str) -> Entry {
        (score, id.to_string())
    }

    #[test]
    fn a_page_stops_at_the_frontier_of_the_shards_with_more() {
        // shard 0 has more below 50; shard 1 is exhausted
        let heads = vec![
            (vec![e(90, "a"), e(50, "b")], true),
            (vec![e(70, "c"), e(10, "d")], false),
        ];
        let (page, more) = merge(Vec::new(), heads, 10);
        assert_eq!(page, vec![e(90, "a"), e(70, "c"), e(50, "b")]);
        assert!(more, "d is below the frontier and comes on the next page");
    }

    #[test]
    fn exhausted_shards_end_the_history() {
        let heads = vec![(vec![e(5, "x")], false), (vec![], false)];
        let (page, more) = merge(vec![e(7, "a")], heads, 10);
        assert_eq!(page, vec![e(7, "a"), e(5, "x")]);
        assert!(!more);
        let (page, more) = merge(vec![e(7, "a")], vec![(vec![e(5, "x")], false)], 1);
        assert_eq!(page, vec![e(7, "a")]);
        assert!(more, "cut by count");
    }

    #[test]
    fn ties_order_by_id_descending() {
        let heads = vec![(vec![e(5, "a"), e(5, "c")], false)];
        let (page, _) = merge(vec![e(5, "b")], heads, 10);
        assert_eq!(page, vec![e(5, "c"), e(5, "b"), e(5, "a")]);
    }

    #[test]
    fn depth_covers_twice_the_even_share() {
        assert_eq!(per_shard(100, 64), MIN_PER_SHARD);
        assert_eq!(per_shard(1000, 64), 32);
        assert_eq!(per_shard(10, 1), 21);
    }
}
