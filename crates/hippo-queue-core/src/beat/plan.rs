//! The decision a leading scheduler takes for one entry: wait, send a tick, or skip
//! missed ticks. Pure, so that the missed-tick policies are tested without clocks.

use std::time::Duration;

use super::{Missed, Schedule};

/// How long a tick's sent-marker is kept: twice the interval to the next tick, so that
/// a later leader that lost the claim still finds it, within a minute to a week.
pub(crate) fn sent_marker_ttl(schedule: &Schedule, tick: u64) -> Duration {
    const MIN: u64 = 60_000;
    const MAX: u64 = 7 * 24 * 3_600_000;
    let ms = schedule
        .next_after(tick)
        .map_or(MAX, |next| next.saturating_sub(tick).saturating_mul(2));
    Duration::from_millis(ms.clamp(MIN, MAX))
}

/// What to do for one entry now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Nothing is due; the next tick is at this time (ms).
    Wait(u64),
    /// Send this tick (claim it first). `catch_up` when earlier ticks since the cursor
    /// are collapsed into it, or it is later than the tolerance.
    Send { tick: u64, catch_up: bool },
    /// Ticks up to `last_missed` were missed and are dropped; the next one is `next`.
    Skip { last_missed: u64, next: Option<u64> },
    /// The schedule has no further tick.
    Done,
}

/// Decides for an entry whose last sent tick (or, never sent, the scheduler's start
/// time) is `cursor`, at time `now`. A due tick is on time when it is at most
/// `tolerance_ms` old.
///
/// - Nothing due after the cursor: wait for the next tick.
/// - Due ticks: the most recent one, `latest`, is the candidate. Every earlier due tick
///   is missed and dropped under both policies.
///   - `RunOnce` sends `latest`, however late.
///   - `Skip` sends `latest` only when it is on time; otherwise it is missed too, and
///     the entry waits for the next tick after `now`.
pub(crate) fn plan(
    schedule: &Schedule,
    missed: Missed,
    cursor: u64,
    now: u64,
    tolerance_ms: u64,
) -> Plan {
    let Some(next) = schedule.next_after(cursor) else {
        return Plan::Done;
    };
    if next > now {
        return Plan::Wait(next);
    }
    let latest = schedule
        .last_at_or_before(now)
        .filter(|l| *l >= next)
        .unwrap_or(next);
    let on_time = now - latest <= tolerance_ms;
    match missed {
        Missed::RunOnce => Plan::Send {
            tick: latest,
            catch_up: latest != next || !on_time,
        },
        Missed::Skip if on_time => Plan::Send {
            tick: latest,
            catch_up: false,
        },
        Missed::Skip => Plan::Skip {
            last_missed: latest,
            next: schedule.next_after(now),
        },
    }
}

/// When a plan wants the scheduler back (ms), if ever.
pub(crate) fn next_run(plan: Plan) -> Option<u64> {
    match plan {
        Plan::Wait(t) => Some(t),
        Plan::Send { tick, .. } => Some(tick),
        Plan::Skip { next, .. } => next,
        Plan::Done => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sent_markers_last_two_intervals_within_bounds() {
        use super::sent_marker_ttl;
        use std::time::Duration;
        let hourly = Schedule::every_hours(1);
        assert_eq!(
            sent_marker_ttl(&hourly, 3_600_000),
            Duration::from_secs(7200)
        );
        let fast = Schedule::every(Duration::from_millis(100));
        assert_eq!(sent_marker_ttl(&fast, 1_000), Duration::from_secs(60));
        let yearly = Schedule::every_hours(24 * 365);
        assert_eq!(
            sent_marker_ttl(&yearly, 0),
            Duration::from_secs(7 * 24 * 3600)
        );
    }

    use super::*;
    use std::time::Duration;

    fn every_100() -> Schedule {
        Schedule::every(Duration::from_millis(100))
    }

    #[test]
    fn waits_for_the_next_tick() {
        let s = every_100();
        assert_eq!(
            plan(&s, Missed::RunOnce, 1_000, 1_050, 20),
            Plan::Wait(1_100)
        );
        assert_eq!(plan(&s, Missed::Skip, 1_000, 1_099, 20), Plan::Wait(1_100));
        // a tick is due at its instant, not after
        assert_eq!(
            plan(&s, Missed::Skip, 1_000, 1_100, 20),
            Plan::Send {
                tick: 1_100,
                catch_up: false
            }
        );
    }

    #[test]
    fn on_time_ticks_are_sent_under_both_policies() {
        let s = every_100();
        for policy in [Missed::Skip, Missed::RunOnce] {
            assert_eq!(
                plan(&s, policy, 1_000, 1_115, 20),
                Plan::Send {
                    tick: 1_100,
                    catch_up: false
                },
                "{policy:?}"
            );
        }
    }

    #[test]
    fn run_once_sends_one_catch_up_for_many_missed_ticks() {
        let s = every_100();
        // last sent 1_000; ticks 1_100..=1_700 missed; now 1_750
        assert_eq!(
            plan(&s, Missed::RunOnce, 1_000, 1_750, 20),
            Plan::Send {
                tick: 1_700,
                catch_up: true
            }
        );
        // one tick, but late: still sent, as a catch-up
        assert_eq!(
            plan(&s, Missed::RunOnce, 1_000, 1_150, 20),
            Plan::Send {
                tick: 1_100,
                catch_up: true
            }
        );
        // after the catch-up, the entry continues with the next tick
        assert_eq!(
            plan(&s, Missed::RunOnce, 1_700, 1_750, 20),
            Plan::Wait(1_800)
        );
    }

    #[test]
    fn skip_drops_missed_ticks_and_waits_for_the_next() {
        let s = every_100();
        assert_eq!(
            plan(&s, Missed::Skip, 1_000, 1_750, 20),
            Plan::Skip {
                last_missed: 1_700,
                next: Some(1_800)
            }
        );
        // the latest tick is on time: it is sent, the older ones are dropped
        assert_eq!(
            plan(&s, Missed::Skip, 1_000, 1_705, 20),
            Plan::Send {
                tick: 1_700,
                catch_up: false
            }
        );
    }

    #[test]
    fn cron_schedules_follow_the_same_policies() {
        let s = Schedule::cron("0 * * * *").unwrap_or_else(|e| panic!("{e}"));
        let h = 3_600_000;
        assert_eq!(
            plan(&s, Missed::RunOnce, h, 5 * h + 10_000, 1_000),
            Plan::Send {
                tick: 5 * h,
                catch_up: true
            }
        );
        assert_eq!(
            plan(&s, Missed::Skip, h, 5 * h + 10_000, 1_000),
            Plan::Skip {
                last_missed: 5 * h,
                next: Some(6 * h)
            }
        );
        assert_eq!(
            next_run(plan(&s, Missed::Skip, h, 5 * h + 10_000, 1_000)),
            Some(6 * h)
        );
    }

    #[test]
    fn finished_schedules_are_done() {
        let s = Schedule::cron("0 0 0 1 1 * 1970").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plan(&s, Missed::RunOnce, 0, 10, 0), Plan::Done);
        assert_eq!(next_run(Plan::Done), None);
    }
}
