//! CPU time per event, read from `/proc` around a run: the inputs of the scaling model in
//! `docs/PERFORMANCE.md` (what one event costs a node, its writer thread, and PostgreSQL),
//! measured instead of estimated. Throughput on a shared VM swings between runs; CPU time per
//! event moves far less, so it is also what a before-and-after compares.
//!
//! Times are user + system time in seconds, from `/proc/<pid>/stat` (clock ticks of the
//! kernel's fixed user-space rate, 100 per second). A process's own figure counts all its
//! threads; PostgreSQL's counts the postmaster, every live backend, and the backends that
//! already exited (their time is added to the postmaster's `cutime`/`cstime` when reaped).

use std::path::Path;

/// The kernel's `USER_HZ`, fixed at 100 on every architecture Linux exposes `/proc` times in.
const TICKS_PER_SECOND: f64 = 100.0;

/// The fields of one `/proc/.../stat` line after the command name (`state` is index 0).
fn stat_fields(path: &Path) -> Option<Vec<u64>> {
    let text = std::fs::read_to_string(path).ok()?;
    // The command name is in parentheses and may hold spaces and parentheses itself.
    let after_name = &text[text.rfind(')')? + 1..];
    Some(
        after_name
            .split_whitespace()
            .map(|field| field.parse::<u64>().unwrap_or(0))
            .collect(),
    )
}

/// Field indexes after the command name: `stat(5)` numbers them from 1 with the pid and the
/// name first, so field n is index n - 3.
const PPID: usize = 1;
const UTIME: usize = 11;
const STIME: usize = 12;
const CUTIME: usize = 13;
const CSTIME: usize = 14;

fn ticks(fields: &[u64], indexes: &[usize]) -> u64 {
    indexes
        .iter()
        .map(|&i| fields.get(i).copied().unwrap_or(0))
        .sum()
}

/// CPU seconds process `pid` has used so far, all its threads.
fn process_seconds(pid: u32) -> f64 {
    let fields = stat_fields(Path::new(&format!("/proc/{pid}/stat"))).unwrap_or_default();
    ticks(&fields, &[UTIME, STIME]) as f64 / TICKS_PER_SECOND
}

/// CPU seconds used so far by the threads of `pid` whose name starts with `prefix` (the
/// store's writers name theirs: `sqlite-writer`, `postgres-writer-N`).
fn threads_seconds(pid: u32, prefix: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let mut total = 0;
    for task in tasks.flatten() {
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if name.trim_end().starts_with(prefix)
            && let Some(fields) = stat_fields(&task.path().join("stat"))
        {
            total += ticks(&fields, &[UTIME, STIME]);
        }
    }
    total as f64 / TICKS_PER_SECOND
}

/// CPU seconds used so far by process `parent` and its children, live and reaped (a
/// PostgreSQL server: the postmaster and its backends).
fn tree_seconds(parent: u32) -> f64 {
    let own = stat_fields(Path::new(&format!("/proc/{parent}/stat"))).unwrap_or_default();
    let mut total = ticks(&own, &[UTIME, STIME, CUTIME, CSTIME]);
    if let Ok(processes) = std::fs::read_dir("/proc") {
        for process in processes.flatten() {
            let is_pid = process
                .file_name()
                .to_str()
                .is_some_and(|name| name.bytes().all(|b| b.is_ascii_digit()));
            if !is_pid {
                continue;
            }
            if let Some(fields) = stat_fields(&process.path().join("stat"))
                && fields.get(PPID).copied() == Some(u64::from(parent))
            {
                total += ticks(&fields, &[UTIME, STIME]);
            }
        }
    }
    total as f64 / TICKS_PER_SECOND
}

/// The parent of process `pid` (for a PostgreSQL backend: its postmaster).
pub fn parent_of(pid: u32) -> Option<u32> {
    let fields = stat_fields(Path::new(&format!("/proc/{pid}/stat")))?;
    u32::try_from(*fields.get(PPID)?).ok()
}

/// What a run's CPU is read from: a server process (and its writer threads, by name), the
/// PostgreSQL server it writes to if any, and this process, the load generator.
pub struct Meter {
    pub server: u32,
    pub writer_threads: &'static str,
    pub postmaster: Option<u32>,
}

/// CPU seconds used so far by each part a [`Meter`] reads.
pub struct Reading {
    server: f64,
    writers: f64,
    database: f64,
    generator: f64,
}

/// Microseconds of CPU per event of each part between two [`Reading`]s.
pub struct Costs {
    pub server: f64,
    pub writers: f64,
    pub database: f64,
    pub generator: f64,
}

impl Meter {
    pub fn read(&self) -> Reading {
        Reading {
            server: process_seconds(self.server),
            writers: threads_seconds(self.server, self.writer_threads),
            database: self.postmaster.map_or(0.0, tree_seconds),
            generator: process_seconds(std::process::id()),
        }
    }
}

impl Reading {
    /// The cost per event of `events` between `earlier` and this reading.
    pub fn since(&self, earlier: &Reading, events: u64) -> Costs {
        Costs {
            server: micros_per_event(earlier.server, self.server, events),
            writers: micros_per_event(earlier.writers, self.writers, events),
            database: micros_per_event(earlier.database, self.database, events),
            generator: micros_per_event(earlier.generator, self.generator, events),
        }
    }
}

impl Costs {
    /// Events a second this machine's cores allow at these costs, if they did nothing else.
    pub fn allowed_rate(&self) -> f64 {
        cores() as f64 * 1e6 / (self.server + self.database + self.generator).max(1.0)
    }
}

/// The cores this process may run on (the bound on what a run can use).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// Microseconds of CPU per event between two readings.
fn micros_per_event(before: f64, after: f64, events: u64) -> f64 {
    if events == 0 {
        return 0.0;
    }
    (after - before).max(0.0) * 1e6 / events as f64
}
