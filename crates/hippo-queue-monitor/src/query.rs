//! The parameters of `GET /api/tasks` (Flower's names and formats), checked, and the
//! decision whether a record matches them.

use std::cmp::Ordering;

use chrono::NaiveDateTime;
use hippo_queue_core::{TaskMeta, TaskState};
use serde::Deserialize;

use crate::search::{self, Fields, Query};
use crate::task_view::result_value;

/// The most tasks one request returns (`limit`, and the page when none is given).
pub const MAX_LIMIT: usize = 1000;
/// The deepest a sorted listing goes (`offset + limit` with `sort_by`): sorting keeps
/// that many records in memory.
pub const MAX_SORT_WINDOW: usize = 10_000;
/// The format of `received_start` and `received_end` (UTC).
pub const TIME_FORMAT: &str = "%Y-%m-%d %H:%M";

/// `/api/tasks` query parameters as sent.
#[derive(Debug, Default, Deserialize)]
pub struct TaskParams {
    /// Most tasks returned.
    pub limit: Option<String>,
    /// Tasks skipped first.
    pub offset: Option<String>,
    /// `name`, `state`, `received` or `started`, `-` in front for descending.
    pub sort_by: Option<String>,
    /// Worker id (exact).
    pub workername: Option<String>,
    /// Task name (exact).
    pub taskname: Option<String>,
    /// State name.
    pub state: Option<String>,
    /// Earliest time, `YYYY-MM-DD HH:MM` (UTC).
    pub received_start: Option<String>,
    /// Latest time, `YYYY-MM-DD HH:MM` (UTC).
    pub received_end: Option<String>,
    /// A search query (see [`crate::search`]).
    pub search: Option<String>,
}

/// Why the parameters were refused (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// A number parameter is not a number in range.
    #[error("{name}: expected a whole number from 0 to {max} (got {value:?})")]
    Number {
        /// Parameter.
        name: &'static str,
        /// Largest accepted.
        max: usize,
        /// What was sent.
        value: String,
    },
    /// Unknown sort key.
    #[error("sort_by: expected name, state, received or started, with an optional '-' (got {0:?})")]
    SortKey(String),
    /// Unknown state.
    #[error(
        "state: unknown state {0:?} (expected PENDING, RECEIVED, STARTED, SUCCESS, FAILURE, RETRY, REVOKED or REJECTED)"
    )]
    State(String),
    /// A time not in [`TIME_FORMAT`].
    #[error("{name}: expected a UTC time as YYYY-MM-DD HH:MM (got {value:?})")]
    Time {
        /// Parameter.
        name: &'static str,
        /// What was sent.
        value: String,
    },
    /// A sorted listing deeper than [`MAX_SORT_WINDOW`].
    #[error("sort_by with offset + limit above {MAX_SORT_WINDOW}: narrow the listing with filters")]
    SortTooDeep,
    /// The search query.
    #[error(transparent)]
    Search(#[from] search::SearchError),
}

/// What to sort by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Task name.
    Name,
    /// State name.
    State,
    /// Time of the record (received and started both sort by it).
    Time,
}

/// A checked `/api/tasks` query.
#[derive(Debug, Clone)]
pub struct TaskQuery {
    /// Most tasks returned.
    pub limit: usize,
    /// Tasks skipped first.
    pub offset: usize,
    /// Sort key and whether descending; `None`: newest first.
    pub sort: Option<(SortKey, bool)>,
    /// Worker id.
    pub worker: Option<String>,
    /// Task name.
    pub name: Option<String>,
    /// State.
    pub state: Option<TaskState>,
    /// Earliest time, ms.
    pub from_ms: Option<u64>,
    /// Latest time, ms.
    pub until_ms: Option<u64>,
    /// Search query.
    pub search: Option<Query>,
}

fn number(
    name: &'static str,
    v: Option<&str>,
    default: usize,
    max: usize,
) -> Result<usize, QueryError> {
    match v.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(default),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(QueryError::Number {
                name,
                max,
                value: s.to_string(),
            }),
        },
    }
}

/// Flower's "All" (or nothing) means no filter.
fn filter(v: Option<&String>) -> Option<&str> {
    v.map(|s| s.trim()).filter(|s| !s.is_empty() && *s != "All")
}

fn time(name: &'static str, v: Option<&String>) -> Result<Option<u64>, QueryError> {
    let Some(s) = filter(v) else { return Ok(None) };
    NaiveDateTime::parse_from_str(s, TIME_FORMAT)
        .ok()
        .and_then(|t| u64::try_from(t.and_utc().timestamp_millis()).ok())
        .map(Some)
        .ok_or_else(|| QueryError::Time {
            name,
            value: s.to_string(),
        })
}

impl TaskQuery {
    /// Checks the parameters.
    pub fn from_params(p: &TaskParams) -> Result<Self, QueryError> {
        let limit = number("limit", p.limit.as_deref(), MAX_LIMIT, MAX_LIMIT)?;
        let offset = number("offset", p.offset.as_deref(), 0, usize::MAX / 2)?;
        let sort = match filter(p.sort_by.as_ref()) {
            None => None,
            Some(s) => {
                let (key, desc) = match s.strip_prefix('-') {
                    Some(k) => (k, true),
                    None => (s, false),
                };
                let key = match key {
                    "name" => SortKey::Name,
                    "state" => SortKey::State,
                    "received" | "started" => SortKey::Time,
                    _ => return Err(QueryError::SortKey(s.to_string())),
                };
                Some((key, desc))
            }
        };
        if sort.is_some() && offset.saturating_add(limit) > MAX_SORT_WINDOW {
            return Err(QueryError::SortTooDeep);
        }
        let state = match filter(p.state.as_ref()) {
            None => None,
            Some(s) => Some(
                s.to_uppercase()
                    .parse::<TaskState>()
                    .map_err(|_| QueryError::State(s.to_string()))?,
            ),
        };
        Ok(TaskQuery {
            limit,
            offset,
            sort,
            worker: filter(p.workername.as_ref()).map(str::to_string),
            name: filter(p.taskname.as_ref()).map(str::to_string),
            state,
            from_ms: time("received_start", p.received_start.as_ref())?,
            until_ms: time("received_end", p.received_end.as_ref())?,
            search: p
                .search
                .as_deref()
                .map(search::parse)
                .transpose()?
                .flatten(),
        })
    }

    /// Whether a record matches every filter.
    pub fn matches(&self, m: &TaskMeta) -> bool {
        self.worker
            .as_ref()
            .is_none_or(|w| m.worker.as_deref() == Some(w.as_str()))
            && self.name.as_ref().is_none_or(|n| m.name == *n)
            && self.state.is_none_or(|s| m.state == s)
            && self.from_ms.is_none_or(|t| m.date_done >= t)
            && self.until_ms.is_none_or(|t| m.date_done <= t)
            && self.search.as_ref().is_none_or(|q| q.matches(&fields(m)))
    }

    /// The order of two records under `sort` (newest first without one).
    pub fn order(&self, a: &TaskMeta, b: &TaskMeta) -> Ordering {
        let Some((key, desc)) = self.sort else {
            return b.date_done.cmp(&a.date_done);
        };
        let o = match key {
            SortKey::Name => a.name.cmp(&b.name),
            SortKey::State => a.state.as_str().cmp(b.state.as_str()),
            SortKey::Time => a.date_done.cmp(&b.date_done),
        }
        .then_with(|| a.task_id.cmp(&b.task_id));
        if desc { o.reverse() } else { o }
    }
}

/// What the search sees of a record.
pub fn fields(m: &TaskMeta) -> Fields {
    let result = match (&m.error, result_value(m)) {
        (Some(e), _) => e.traceback(),
        (None, serde_json::Value::Null) => String::new(),
        (None, v) => v.to_string(),
    };
    Fields {
        uuid: m.task_id.clone(),
        name: m.name.clone(),
        state: m.state.as_str().to_string(),
        worker: m.worker.clone().unwrap_or_default(),
        args: String::new(),
        kwargs: None,
        result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> TaskParams {
        let mut p = TaskParams::default();
        for (k, v) in pairs {
            let v = Some(v.to_string());
            match *k {
                "limit" => p.limit = v,
                "offset" => p.offset = v,
                "sort_by" => p.sort_by = v,
                "workername" => p.workername = v,
                "taskname" => p.taskname = v,
                "state" => p.state = v,
                "received_start" => p.received_start = v,
                "received_end" => p.received_end = v,
                "search" => p.search = v,
                _ => unreachable!(),
            }
        }
        p
    }

    fn meta(id: &str, name: &str, state: TaskState, at: u64) -> TaskMeta {
        let mut m = TaskMeta::new(id, name, state);
        m.date_done = at;
        m.worker = Some("w1".into());
        m
    }

    #[test]
    fn defaults_and_all_mean_no_filter() {
        let q =
            TaskQuery::from_params(&params(&[("state", "All"), ("workername", "All")])).unwrap();
        assert_eq!((q.limit, q.offset), (MAX_LIMIT, 0));
        assert!(q.state.is_none() && q.worker.is_none() && q.sort.is_none());
    }

    #[test]
    fn bad_values_are_named() {
        let cases = [
            ("limit", "ten", "limit"),
            ("limit", "5000", "limit"),
            ("offset", "-1", "offset"),
            ("sort_by", "age", "sort_by"),
            ("state", "DONE", "state"),
            ("received_start", "yesterday", "received_start"),
            ("search", "(ab", "search"),
        ];
        for (k, v, named) in cases {
            let e = TaskQuery::from_params(&params(&[(k, v)])).unwrap_err();
            assert!(e.to_string().contains(named), "{k}={v}: {e}");
        }
        let deep = params(&[("sort_by", "name"), ("offset", "9950"), ("limit", "100")]);
        assert_eq!(
            TaskQuery::from_params(&deep).unwrap_err(),
            QueryError::SortTooDeep
        );
    }

    #[test]
    fn filters_and_time_range_match_records() {
        let q = TaskQuery::from_params(&params(&[
            ("state", "success"),
            ("taskname", "add"),
            ("received_start", "1970-01-01 00:01"),
            ("received_end", "1970-01-01 00:02"),
        ]))
        .unwrap();
        assert!(q.matches(&meta("a", "add", TaskState::Success, 90_000)));
        assert!(!q.matches(&meta("a", "add", TaskState::Success, 30_000)));
        assert!(!q.matches(&meta("a", "add", TaskState::Failure, 90_000)));
        assert!(!q.matches(&meta("a", "mul", TaskState::Success, 90_000)));
        let by_worker = TaskQuery::from_params(&params(&[("workername", "w2")])).unwrap();
        assert!(!by_worker.matches(&meta("a", "add", TaskState::Success, 1)));
    }

    #[test]
    fn sorting_by_name_descending_and_by_default_newest_first() {
        let (a, b) = (
            meta("1", "alpha", TaskState::Success, 10),
            meta("2", "beta", TaskState::Success, 20),
        );
        let q = TaskQuery::from_params(&params(&[("sort_by", "-name")])).unwrap();
        assert_eq!(q.order(&a, &b), Ordering::Greater);
        let q = TaskQuery::from_params(&params(&[])).unwrap();
        assert_eq!(q.order(&a, &b), Ordering::Greater);
        let q = TaskQuery::from_params(&params(&[("sort_by", "received")])).unwrap();
        assert_eq!(q.order(&a, &b), Ordering::Less);
    }
}
