//! The beat's status as the monitor shows it (`GET /api/beat`): the leading
//! scheduler and each entry's schedule, last and next run, read from the status the
//! leader publishes in the beat store (refreshed with every lease renewal, gone three
//! lease periods after the last scheduler stopped).

use hippo_queue_core::beat::BeatStatus;
use serde_json::{Value, json};

use crate::task_view::seconds;

/// The answer of `GET /api/beat`: `running` is whether a scheduler published its
/// status lately; times are seconds since the epoch, as everywhere in the API;
/// `runs` are the entries' run counts, in order (`total_run_count`, `null` where the
/// store does not count).
pub fn beat_json(status: Option<&BeatStatus>, runs: &[Option<u64>]) -> Value {
    let Some(s) = status else {
        return json!({"running": false, "leader": Value::Null, "entries": []});
    };
    let entries: Vec<Value> = s
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            json!({
                "name": e.name,
                "task": e.task,
                "schedule": e.schedule,
                "missed": e.missed,
                "last_run": e.last_run_ms.map(seconds),
                "next_run": e.next_run_ms.map(seconds),
                "total_run_count": runs.get(i).copied().flatten(),
            })
        })
        .collect();
    let leader = s.leader.as_ref().map_or(
        Value::Null,
        |l| json!({"beat_id": l.beat_id, "expires": seconds(l.expires_ms)}),
    );
    json!({
        "running": true,
        "reported_by": s.beat_id,
        "leader": leader,
        "entries": entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hippo_queue_core::beat::{EntryStatus, LeaderInfo, Missed};

    #[test]
    fn no_status_is_a_beat_not_running() {
        let j = beat_json(None, &[]);
        assert_eq!(j["running"], false);
        assert_eq!(j["entries"], json!([]));
    }

    #[test]
    fn entries_show_their_runs_in_seconds() {
        let s = BeatStatus {
            beat_id: "beat-a".into(),
            is_leader: true,
            leader: Some(LeaderInfo {
                beat_id: "beat-a".into(),
                expires_ms: 10_000,
            }),
            entries: vec![EntryStatus {
                name: "nightly".into(),
                task: "reports.build".into(),
                schedule: "every 1d".into(),
                missed: Missed::RunOnce,
                last_run_ms: Some(1_500),
                next_run_ms: None,
            }],
        };
        let j = beat_json(Some(&s), &[Some(3)]);
        assert_eq!(j["running"], true);
        assert_eq!(j["leader"]["beat_id"], "beat-a");
        assert_eq!(j["leader"]["expires"], 10.0);
        let e = &j["entries"][0];
        assert_eq!(e["name"], "nightly");
        assert_eq!(e["task"], "reports.build");
        assert_eq!(e["schedule"], "every 1d");
        assert_eq!(e["last_run"], 1.5);
        assert_eq!(e["next_run"], Value::Null);
        assert!(e["missed"].is_string(), "{e}");
        assert_eq!(e["total_run_count"], 3);
        assert_eq!(
            beat_json(Some(&s), &[])["entries"][0]["total_run_count"],
            Value::Null
        );
    }
}
