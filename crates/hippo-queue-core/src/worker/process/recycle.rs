//! Whether a child goes on after a task, and how a dead child is described. Pure, so
//! that every rule is tested without processes.

/// When a child is replaced between tasks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Rules {
    /// Tasks a child runs before it is replaced.
    pub max_tasks: Option<u64>,
    /// Resident memory, in KiB, above which a child is replaced after its task.
    pub max_memory_kib: Option<u64>,
}

/// What one child has done, and where the pool stands.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChildState {
    /// Tasks this child has run.
    pub tasks_run: u64,
    /// Its resident memory after the last task, in bytes (0: unknown).
    pub rss: u64,
    /// The pool generation it was started in.
    pub generation: u64,
}

/// Why a child is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retire {
    /// It ran `max_tasks_per_child` tasks.
    MaxTasks(u64),
    /// Its resident memory (KiB) went over `max_memory_per_child`.
    MaxMemory { rss_kib: u64, limit_kib: u64 },
    /// The pool was restarted since it started.
    Restarted,
    /// The pool was shrunk or closed: fewer children are wanted.
    Surplus,
}

impl std::fmt::Display for Retire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Retire::MaxTasks(n) => write!(f, "it ran max_tasks_per_child ({n}) tasks"),
            Retire::MaxMemory { rss_kib, limit_kib } => write!(
                f,
                "its resident memory ({rss_kib} KiB) is over max_memory_per_child ({limit_kib} KiB)"
            ),
            Retire::Restarted => write!(f, "the pool was restarted"),
            Retire::Surplus => write!(f, "the pool has fewer slots now"),
        }
    }
}

/// Whether a child that just finished a task goes back to the idle set.
/// `wanted` is false once the pool has all the idle children its slots need (or is
/// closed).
pub(crate) fn verdict(
    rules: Rules,
    child: ChildState,
    generation: u64,
    wanted: bool,
) -> Option<Retire> {
    if child.generation != generation {
        return Some(Retire::Restarted);
    }
    if !wanted {
        return Some(Retire::Surplus);
    }
    if let Some(n) = rules.max_tasks.filter(|&n| child.tasks_run >= n) {
        return Some(Retire::MaxTasks(n));
    }
    let rss_kib = child.rss / 1024;
    match rules.max_memory_kib {
        Some(limit_kib) if child.rss > 0 && rss_kib > limit_kib => {
            Some(Retire::MaxMemory { rss_kib, limit_kib })
        }
        _ => None,
    }
}

/// How a child ended: "killed by signal 9 (SIGKILL)", "exited with code 3".
pub(crate) fn describe_exit(code: Option<i32>, signal: Option<i32>) -> String {
    match (signal, code) {
        (Some(sig), _) => {
            let name = nix::sys::signal::Signal::try_from(sig)
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|_| "unknown signal".to_string());
            format!("killed by signal {sig} ({name})")
        }
        (None, Some(code)) => format!("exited with code {code}"),
        (None, None) => "ended in an unknown way".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(tasks_run: u64, rss: u64) -> ChildState {
        ChildState {
            tasks_run,
            rss,
            generation: 1,
        }
    }

    #[test]
    fn a_child_goes_on_without_rules() {
        assert_eq!(
            verdict(Rules::default(), child(1_000_000, 1 << 40), 1, true),
            None
        );
    }

    #[test]
    fn max_tasks_retires_on_the_nth_task() {
        let rules = Rules {
            max_tasks: Some(3),
            ..Rules::default()
        };
        assert_eq!(verdict(rules, child(2, 0), 1, true), None);
        assert_eq!(
            verdict(rules, child(3, 0), 1, true),
            Some(Retire::MaxTasks(3))
        );
    }

    #[test]
    fn max_memory_compares_kib_and_ignores_unknown_rss() {
        let rules = Rules {
            max_memory_kib: Some(100),
            ..Rules::default()
        };
        assert_eq!(verdict(rules, child(1, 100 * 1024), 1, true), None);
        assert_eq!(
            verdict(rules, child(1, 101 * 1024), 1, true),
            Some(Retire::MaxMemory {
                rss_kib: 101,
                limit_kib: 100
            })
        );
        assert_eq!(verdict(rules, child(1, 0), 1, true), None);
    }

    #[test]
    fn a_restart_or_a_shrink_comes_before_the_limits() {
        let rules = Rules {
            max_tasks: Some(1),
            ..Rules::default()
        };
        assert_eq!(
            verdict(rules, child(1, 0), 2, true),
            Some(Retire::Restarted)
        );
        assert_eq!(verdict(rules, child(1, 0), 1, false), Some(Retire::Surplus));
    }

    #[test]
    fn exits_are_named() {
        assert_eq!(describe_exit(None, Some(9)), "killed by signal 9 (SIGKILL)");
        assert_eq!(describe_exit(None, Some(6)), "killed by signal 6 (SIGABRT)");
        assert_eq!(describe_exit(Some(3), None), "exited with code 3");
        assert_eq!(describe_exit(None, None), "ended in an unknown way");
    }
}
