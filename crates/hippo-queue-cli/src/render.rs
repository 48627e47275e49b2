//! Tables and JSON.

use std::fmt::Write;

use hippo_queue_core::TaskMeta;
use hippo_queue_core::backend::{DeadLetter, QueueStats};
use hippo_queue_core::beat::BeatStatus;
use hippo_queue_core::codec::Codec;
use hippo_queue_core::control::{Reply, ReplyBody};
use hippo_queue_core::events::{Event, WorkerInfo};
use hippo_queue_core::message::Envelope;
use hippo_queue_core::time::from_ms;

type R = Result<String, Box<dyn std::error::Error>>;

/// Renders rows as an aligned table with a header.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < width.len() {
                width[i] = width[i].max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let last = cells.len().saturating_sub(1);
        for (i, c) in cells.iter().enumerate() {
            if i == last {
                out.push_str(c);
            } else {
                let _ = write!(out, "{c:<w$}  ", w = width[i]);
            }
        }
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

fn time(ms: u64) -> String {
    let secs = from_ms(ms)
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (d, s) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil(d as i64);
    format!(
        "{y:04}-{m:02}-{day:02} {:02}:{:02}:{:02}.{:03}",
        s / 3600,
        s % 3600 / 60,
        s % 60,
        ms % 1000
    )
}

/// Days since the epoch to (year, month, day), proleptic Gregorian.
fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

pub fn replies(command: &str, replies: &[Reply], json: bool) -> R {
    if json {
        let mut map = serde_json::Map::new();
        for r in replies {
            map.insert(r.worker.clone(), serde_json::to_value(&r.body)?);
        }
        return Ok(format!("{}\n", serde_json::to_string_pretty(&map)?));
    }
    if replies.is_empty() {
        return Ok(String::new());
    }
    let mut rows = Vec::new();
    let header: Vec<&str>;
    match command {
        "active" | "reserved" | "scheduled" => {
            header = vec![
                "WORKER",
                "ID",
                "NAME",
                "QUEUE",
                "PRIORITY",
                if command == "scheduled" {
                    "DUE"
                } else {
                    "STARTED"
                },
            ];
            for r in replies {
                if let ReplyBody::Tasks(ts) = &r.body {
                    for t in ts {
                        rows.push(vec![
                            r.worker.clone(),
                            t.id.clone(),
                            t.name.clone(),
                            t.queue.clone(),
                            t.priority.to_string(),
                            t.time.map_or_else(|| "-".into(), time),
                        ]);
                    }
                }
            }
        }
        "stats" => {
            let mut out = String::new();
            for r in replies {
                if let ReplyBody::Stats(s) = &r.body {
                    let i = &s.info;
                    let _ = writeln!(out, "{}", r.worker);
                    let kv = [
                        ("hostname", i.hostname.clone()),
                        ("pid", i.pid.to_string()),
                        ("pool", i.pool.clone()),
                        ("concurrency", i.concurrency.to_string()),
                        ("prefetch multiplier", i.prefetch_multiplier.to_string()),
                        (
                            "autoscale",
                            s.autoscale
                                .map_or_else(|| "off".into(), |(max, min)| format!("{min}..{max}")),
                        ),
                        ("queues", i.queues.join(", ")),
                        ("uptime", format!("{:.1} s", s.uptime)),
                        (
                            "memory (rss)",
                            format!("{:.1} MiB", s.memory_rss as f64 / 1048576.0),
                        ),
                        ("active", i.active.to_string()),
                        ("succeeded", i.succeeded.to_string()),
                        ("failed", i.failed.to_string()),
                        ("retried", i.retried.to_string()),
                        ("revoked", i.revoked.to_string()),
                        ("rejected", i.rejected.to_string()),
                    ];
                    for (k, v) in kv {
                        let _ = writeln!(out, "  {k:<20} {v}");
                    }
                    for (name, n) in &s.succeeded_by_task {
                        let _ = writeln!(out, "  {:<20} {n}", format!("ok {name}"));
                    }
                    for (name, n) in &s.failed_by_task {
                        let _ = writeln!(out, "  {:<20} {n}", format!("failed {name}"));
                    }
                }
            }
            return Ok(out);
        }
        "active_queues" => {
            header = vec!["WORKER", "QUEUE", "ROUTING KEY", "PRIORITY"];
            for r in replies {
                if let ReplyBody::Queues(qs) = &r.body {
                    for q in qs {
                        rows.push(vec![
                            r.worker.clone(),
                            q.name.clone(),
                            q.routing_key.clone(),
                            q.priority.to_string(),
                        ]);
                    }
                }
            }
        }
        "query_task" => {
            header = vec!["WORKER", "ID", "STATE"];
            for r in replies {
                if let ReplyBody::TaskStates(m) = &r.body {
                    for (id, st) in m {
                        rows.push(vec![r.worker.clone(), id.clone(), st.clone()]);
                    }
                }
            }
        }
        _ => {
            header = vec!["WORKER", "REPLY"];
            for r in replies {
                let text = match &r.body {
                    ReplyBody::Pong => "pong".to_string(),
                    ReplyBody::Names(n) if n.is_empty() => "(none)".to_string(),
                    ReplyBody::Names(n) => n.join("\n"),
                    ReplyBody::Ok(m) => m.clone(),
                    ReplyBody::Error(e) => format!("error: {e}"),
                    other => format!("{other:?}"),
                };
                let mut lines = text.lines();
                rows.push(vec![
                    r.worker.clone(),
                    lines.next().unwrap_or("").to_string(),
                ]);
                for l in lines {
                    rows.push(vec![String::new(), l.to_string()]);
                }
            }
        }
    }
    Ok(table(&header, &rows))
}

pub fn queues(stats: &[QueueStats], json: bool) -> R {
    if json {
        return Ok(format!("{}\n", serde_json::to_string_pretty(stats)?));
    }
    let rows: Vec<Vec<String>> = stats
        .iter()
        .map(|s| {
            let by_p: Vec<String> = s
                .waiting_by_priority
                .iter()
                .enumerate()
                .rev()
                .filter(|(_, n)| **n > 0)
                .map(|(p, n)| format!("p{p}:{n}"))
                .collect();
            vec![
                s.queue.clone(),
                s.waiting().to_string(),
                if by_p.is_empty() {
                    "-".into()
                } else {
                    by_p.join(" ")
                },
                s.delayed.to_string(),
                s.reserved.to_string(),
                s.dead_letter.to_string(),
            ]
        })
        .collect();
    Ok(table(
        &[
            "QUEUE",
            "WAITING",
            "BY PRIORITY",
            "DELAYED",
            "RESERVED",
            "DEAD-LETTER",
        ],
        &rows,
    ))
}

fn output_json(meta: &TaskMeta) -> serde_json::Value {
    meta.result
        .as_deref()
        .and_then(|b| rmp_serde::from_slice::<serde_json::Value>(b).ok())
        .unwrap_or(serde_json::Value::Null)
}

pub fn result(id: &str, meta: Option<&TaskMeta>, json: bool) -> R {
    let state = meta.map_or("PENDING", |m| m.state.as_str());
    if json {
        let v = serde_json::json!({
            "task_id": id,
            "state": state,
            "result": meta.map(output_json),
            "traceback": meta.and_then(|m| m.error.as_ref()).map(|e| e.traceback()),
            "name": meta.map(|m| m.name.clone()),
            "retries": meta.map(|m| m.retries),
            "worker": meta.and_then(|m| m.worker.clone()),
            "date_done": meta.map(|m| time(m.date_done)),
        });
        return Ok(format!("{}\n", serde_json::to_string_pretty(&v)?));
    }
    let mut out = format!("task_id    {id}\nstate      {state}\n");
    if let Some(m) = meta {
        let _ = writeln!(out, "name       {}", m.name);
        let _ = writeln!(out, "retries    {}", m.retries);
        if let Some(w) = &m.worker {
            let _ = writeln!(out, "worker     {w}");
        }
        let _ = writeln!(out, "date       {}", time(m.date_done));
        if m.result.is_some() {
            let _ = writeln!(out, "result     {}", output_json(m));
        }
        if let Some(e) = &m.error {
            let _ = writeln!(
                out,
                "traceback  {}",
                e.traceback().replace('\n', "\n           ")
            );
        }
    }
    Ok(out)
}

pub fn event(e: &Event, json: bool) -> R {
    if json {
        return Ok(serde_json::to_string(e)?);
    }
    let mut s = format!("{}  {:<16}", time(e.timestamp), e.kind.as_str());
    if let Some(w) = &e.worker {
        let _ = write!(s, " worker={w}");
    }
    if let Some(id) = &e.task_id {
        let _ = write!(s, " id={id}");
    }
    if let Some(n) = &e.task_name {
        let _ = write!(s, " name={n}");
    }
    if let Some(q) = &e.queue {
        let _ = write!(s, " queue={q}");
    }
    if let Some(r) = e.runtime {
        let _ = write!(s, " runtime={r:.4}s");
    }
    if let Some(err) = &e.error {
        let _ = write!(s, " error=\"{err}\"");
    }
    if let Some(i) = &e.info {
        let _ = write!(s, " active={} processed={}", i.active, i.processed());
    }
    Ok(s)
}

pub fn beat(leader: Option<&(String, u64)>, status: Option<&BeatStatus>, json: bool) -> R {
    if json {
        let v = serde_json::json!({
            "leader": leader.map(|(id, until)| serde_json::json!({"beat_id": id, "lease_expires": time(*until)})),
            "entries": status.map(|s| &s.entries),
        });
        return Ok(format!("{}\n", serde_json::to_string_pretty(&v)?));
    }
    let mut out = match leader {
        Some((id, until)) => format!("leader  {id} (lease until {})\n", time(*until)),
        None => "leader  none: no beat is running\n".to_string(),
    };
    match status {
        Some(s) => {
            out.push('\n');
            let rows: Vec<Vec<String>> = s
                .entries
                .iter()
                .map(|e| {
                    vec![
                        e.name.clone(),
                        e.task.clone(),
                        e.schedule.clone(),
                        format!("{:?}", e.missed),
                        e.last_run_ms.map_or_else(|| "never".into(), time),
                        e.next_run_ms.map_or_else(|| "-".into(), time),
                    ]
                })
                .collect();
            out.push_str(&table(
                &[
                    "ENTRY", "TASK", "SCHEDULE", "MISSED", "LAST RUN", "NEXT RUN",
                ],
                &rows,
            ));
        }
        None if leader.is_some() => {
            out.push_str("(the leader has not published its entries yet)\n")
        }
        None => {}
    }
    Ok(out)
}

pub fn workers(ws: &[WorkerInfo], json: bool) -> R {
    if json {
        return Ok(format!("{}\n", serde_json::to_string_pretty(ws)?));
    }
    let rows: Vec<Vec<String>> = ws
        .iter()
        .map(|w| {
            vec![
                w.id.clone(),
                w.pid.to_string(),
                w.pool.clone(),
                w.concurrency.to_string(),
                w.queues.join(","),
                w.active.to_string(),
                w.processed().to_string(),
                time(w.heartbeat_at),
            ]
        })
        .collect();
    Ok(table(
        &[
            "WORKER",
            "PID",
            "POOL",
            "CONCURRENCY",
            "QUEUES",
            "ACTIVE",
            "PROCESSED",
            "LAST HEARTBEAT",
        ],
        &rows,
    ))
}

pub fn dead_letters(codec: &Codec, dead: &[DeadLetter], json: bool) -> R {
    let name = |d: &DeadLetter| {
        codec
            .decode::<Envelope>(&d.payload)
            .map_or_else(|_| "(unreadable)".to_string(), |e| e.name)
    };
    if json {
        let v: Vec<_> = dead
            .iter()
            .map(|d| serde_json::json!({"id": d.id, "queue": d.queue, "reason": d.reason, "name": name(d)}))
            .collect();
        return Ok(format!("{}\n", serde_json::to_string_pretty(&v)?));
    }
    let rows: Vec<Vec<String>> = dead
        .iter()
        .map(|d| vec![d.id.clone(), name(d), d.reason.clone()])
        .collect();
    Ok(table(&["ID", "NAME", "REASON"], &rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(time(0), "1970-01-01 00:00:00.000");
        assert_eq!(time(1_764_030_600_123), "2025-11-25 00:30:00.123");
        assert_eq!(civil(19_723), (2024, 1, 1));
    }

    #[test]
    fn tables_align() {
        let t = table(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A    BB\nxxx  y\n");
    }
}
