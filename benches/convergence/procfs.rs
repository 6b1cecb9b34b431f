//! CPU time and RSS of a process tree, read from /proc. A tree is a session: the script starts
//! every controller and hook server with `setsid`, so its session holds exactly it and its
//! children (kubelambda's evaluation workers).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// One process's numbers, from /proc/PID/stat.
struct Stat {
    session: i64,
    /// utime + stime, clock ticks.
    own_ticks: u64,
    /// cutime + cstime: children that exited and were reaped, clock ticks.
    reaped_ticks: u64,
    rss_pages: u64,
}

fn read_stat(pid: &str) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after "(comm)": state ppid pgrp session tty tpgid flags minflt cminflt majflt
    // cmajflt utime stime cutime cstime priority nice threads itrealvalue starttime vsize rss
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<i64>().ok());
    Some(Stat {
        session: num(3)?,
        own_ticks: (num(11)? + num(12)?) as u64,
        reaped_ticks: (num(13)? + num(14)?) as u64,
        rss_pages: num(21)? as u64,
    })
}

/// Totals over one session.
#[derive(Clone, Copy, Default)]
pub struct TreeSample {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
    pub processes: u32,
}

pub fn sample(session: i64) -> TreeSample {
    // SAFETY: sysconf only reads a configuration value.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let (ticks, page) = (ticks.max(1) as f64, page.max(1) as u64);
    let mut out = TreeSample::default();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    let mut total_ticks = 0u64;
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Some(stat) = read_stat(pid) else { continue };
        if stat.session != session {
            continue;
        }
        total_ticks += stat.own_ticks;
        if pid.parse::<i64>().ok() == Some(session) {
            total_ticks += stat.reaped_ticks;
        }
        out.rss_bytes += stat.rss_pages * page;
        out.processes += 1;
    }
    out.cpu_seconds = total_ticks as f64 / ticks;
    out
}

/// Samples a session's RSS every 100 ms in a thread and keeps the peak.
pub struct PeakSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    max_processes: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl PeakSampler {
    pub fn start(session: i64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let max_processes = Arc::new(AtomicU64::new(0));
        let (s, p, m) = (stop.clone(), peak.clone(), max_processes.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let now = sample(session);
                p.fetch_max(now.rss_bytes, Ordering::Relaxed);
                m.fetch_max(u64::from(now.processes), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        PeakSampler {
            stop,
            peak,
            max_processes,
            thread: Some(thread),
        }
    }

    /// Stops sampling; returns (peak RSS bytes, most processes seen at once).
    pub fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        (
            self.peak.load(Ordering::Relaxed),
            self.max_processes.load(Ordering::Relaxed),
        )
    }
}
