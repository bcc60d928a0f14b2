//! The `process_*` metrics every Prometheus client exports, read from
//! `/proc` at each scrape (prometheus-client has no process collector). On
//! a system without `/proc` the families are listed with no sample.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// What `/proc` says about this process.
#[derive(Debug, Default, PartialEq)]
struct Sample {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<i64>,
    open_fds: Option<i64>,
    start_time_seconds: Option<f64>,
}

/// The process collector.
#[derive(Debug)]
pub struct Process {
    /// Clock ticks per second (`_SC_CLK_TCK`).
    ticks: f64,
    /// Bytes per page.
    page: i64,
    /// When the system booted (Unix seconds), from `/proc/stat`.
    boot: Option<f64>,
}

impl Process {
    pub fn new() -> Process {
        // SAFETY: sysconf reads a system constant; no memory is involved.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        Process {
            ticks: if ticks > 0 { ticks as f64 } else { 100.0 },
            #[allow(clippy::useless_conversion)] // c_long is i32 on 32-bit systems
            page: if page > 0 { i64::from(page) } else { 4096 },
            boot: std::fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|s| boot_time(&s)),
        }
    }

    fn sample(&self) -> Sample {
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        let fields = stat.as_deref().and_then(stat_fields);
        let field = |i: usize| -> Option<f64> { fields.as_ref()?.get(i)?.parse::<f64>().ok() };
        // Fields after the command, counted from `state` (field 3) as 0.
        let cpu = match (field(11), field(12)) {
            (Some(u), Some(s)) => Some((u + s) / self.ticks),
            _ => None,
        };
        let start = match (field(19), self.boot) {
            (Some(ticks), Some(boot)) => Some(boot + ticks / self.ticks),
            _ => None,
        };
        let rss = field(21).map(|pages| pages as i64 * self.page);
        let fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| i64::try_from(d.count()).unwrap_or(i64::MAX));
        Sample {
            cpu_seconds: cpu,
            resident_bytes: rss,
            open_fds: fds,
            start_time_seconds: start,
        }
    }
}

/// The fields of `/proc/self/stat` after the command name (which may hold
/// spaces and parentheses: everything up to the last `)`).
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let after = stat.get(stat.rfind(')')? + 1..)?;
    Some(after.split_whitespace().collect())
}

/// `btime` of `/proc/stat`.
fn boot_time(stat: &str) -> Option<f64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.sample();
        let cpu = ConstCounter::new(s.cpu_seconds.unwrap_or(0.0));
        let m = encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?;
        if s.cpu_seconds.is_some() {
            cpu.encode(m)?;
        }
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                s.resident_bytes.map(|v| v as f64),
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                s.open_fds.map(|v| v as f64),
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds",
                s.start_time_seconds,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value.unwrap_or(0.0));
            let m = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            if value.is_some() {
                gauge.encode(m)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_is_read_past_a_command_with_spaces_and_parentheses() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1000 9999 77 18446744073709551615";
        let fields = stat_fields(stat).expect("fields");
        assert_eq!(fields[0], "S");
        assert_eq!(
            (fields[11], fields[12], fields[19], fields[21]),
            ("250", "50", "1000", "77")
        );
        assert_eq!(
            boot_time("cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_000_000.0)
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_memory_cpu_files_and_a_start() {
        let s = Process::new().sample();
        assert!(s.resident_bytes.is_some_and(|b| b > 1024 * 1024), "{s:?}");
        assert!(s.open_fds.is_some_and(|n| n >= 3), "{s:?}");
        assert!(s.cpu_seconds.is_some(), "{s:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let start = s.start_time_seconds.unwrap_or(0.0);
        assert!(
            start > now - 3600.0 && start <= now + 1.0,
            "{start} vs {now}"
        );
    }
}
