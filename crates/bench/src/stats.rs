//! Latency percentiles and the server's resource use read from /proc.

use anyhow::{anyhow, Context, Result};

/// Linux reports utime/stime in clock ticks of USER_HZ, which is 100 on every architecture
/// Linux supports today (sysconf(_SC_CLK_TCK)).
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// Nearest-rank percentile (`p` in 0..=100) of an ascending slice; `None` when empty.
pub fn percentile(sorted: &[u32], p: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Latency summary in milliseconds, from microsecond samples.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Latency {
    pub samples: usize,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl Latency {
    pub fn from_micros(mut samples: Vec<u32>) -> Latency {
        samples.sort_unstable();
        let ms = |p: f64| percentile(&samples, p).map(|us| us as f64 / 1000.0);
        Latency {
            samples: samples.len(),
            p50_ms: ms(50.0),
            p95_ms: ms(95.0),
            p99_ms: ms(99.0),
            max_ms: ms(100.0),
        }
    }
}

/// VmRSS of a process in KiB, from `/proc/PID/status`.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status (is the server running?)"))?;
    parse_vm_rss(&status).ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// CPU seconds (user + system) a process has used, from `/proc/PID/stat` (`self` works too).
pub fn cpu_seconds(pid: &str) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat (is the server running?)"))?;
    parse_stat_cpu(&stat).ok_or_else(|| anyhow!("cannot parse /proc/{pid}/stat"))
}

fn parse_stat_cpu(stat: &str) -> Option<f64> {
    // The command name (field 2) is in parentheses and may contain spaces; fields after the
    // last ')' start at field 3 (state). utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / CLOCK_TICKS_PER_SECOND)
}

/// What a process's threads have used so far, summed over `/proc/PID/task/*`: CPU time in
/// nanoseconds (`schedstat`'s run time, user + system, far finer than `stat`'s 10 ms ticks) and
/// context switches (`status`; the per-process `status` counts only the main thread's).
/// Threads that exit between two samples take their share with them; the servers measured
/// here keep theirs for the whole run.
#[derive(Debug, Default, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ProcSample {
    pub cpu_ns: u64,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
}

impl ProcSample {
    pub fn since(&self, earlier: &ProcSample) -> ProcSample {
        ProcSample {
            cpu_ns: self.cpu_ns.saturating_sub(earlier.cpu_ns),
            voluntary_switches: self
                .voluntary_switches
                .saturating_sub(earlier.voluntary_switches),
            involuntary_switches: self
                .involuntary_switches
                .saturating_sub(earlier.involuntary_switches),
        }
    }
}

pub fn proc_sample(pid: u32) -> Result<ProcSample> {
    let dir = format!("/proc/{pid}/task");
    let mut total = ProcSample::default();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot list {dir}"))? {
        let task = entry?.path();
        // A thread may exit between listing and reading: skip it.
        let (Ok(schedstat), Ok(status)) = (
            std::fs::read_to_string(task.join("schedstat")),
            std::fs::read_to_string(task.join("status")),
        ) else {
            continue;
        };
        total.cpu_ns += schedstat
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        total.voluntary_switches += status_field(&status, "voluntary_ctxt_switches:");
        total.involuntary_switches += status_field(&status, "nonvoluntary_ctxt_switches:");
    }
    Ok(total)
}

fn status_field(status: &str, name: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or(0)
}

/// The 1-minute load average, for the record of a run on a shared machine.
pub fn load_1min() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 95.0), Some(95));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7], 99.0), Some(7));
        // Ten samples: p95 and p99 are both the largest (rank ceil(9.5) = 10).
        let w: Vec<u32> = (1..=10).collect();
        assert_eq!(percentile(&w, 95.0), Some(10));
        assert_eq!(percentile(&w, 50.0), Some(5));
    }

    #[test]
    fn latency_summary_sorts_and_converts() {
        let l = Latency::from_micros(vec![3000, 1000, 2000, 4000]);
        assert_eq!(l.samples, 4);
        assert_eq!(l.p50_ms, Some(2.0));
        assert_eq!(l.max_ms, Some(4.0));
        assert_eq!(Latency::from_micros(vec![]).p99_ms, None);
    }

    #[test]
    fn proc_parsing() {
        let status = "Name:\tlua5.4\nVmPeak:\t  100 kB\nVmRSS:\t   23456 kB\nThreads:\t1\n";
        assert_eq!(parse_vm_rss(status), Some(23456));
        let stat = "1234 (beam.smp (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 100 0 0";
        assert_eq!(parse_stat_cpu(stat), Some(3.0));
        // This process can be read.
        assert!(cpu_seconds("self").unwrap() >= 0.0);
        assert!(rss_kib(std::process::id()).unwrap() > 0);
        let before = proc_sample(std::process::id()).unwrap();
        let spin = Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(20) {}
        let used = proc_sample(std::process::id()).unwrap().since(&before);
        assert!(used.cpu_ns >= 10_000_000, "{used:?}");
        assert_eq!(
            status_field(
                "voluntary_ctxt_switches:\t17\nnonvoluntary_ctxt_switches:\t3\n",
                "nonvoluntary_ctxt_switches:"
            ),
            3
        );
    }
}
