//! What a worker process starts with and gives up.
//!
//! - **Environment**: the pool starts workers with an empty environment plus [`PASSED_ENV`] (how
//!   to log). In a cluster, the controller's environment holds the API server's address and
//!   whatever the Deployment sets; a hook must see none of it. What the operator passes to hooks
//!   (`--ext-str`, `--tera-env-allow`) is read by the pool and sent in the init frame.
//! - **No new privileges** (`PR_SET_NO_NEW_PRIVS`): nothing the worker could execute would gain
//!   privileges (setuid binaries, file capabilities).
//! - **A seccomp filter** that makes these system calls fail with `EPERM`: `socket` (no network,
//!   no Unix sockets such as a container runtime's), `io_uring_setup` (which could open sockets
//!   around that), `execve`/`execveat` (no other program), `ptrace` and
//!   `process_vm_readv`/`process_vm_writev` (no reading the controller's memory), and the kernel
//!   keyring calls. Hooks have no primitive for any of these; the filter is there in case the
//!   evaluator itself has a bug that lets a hook run code.
//!
//! Both need no privileges. Where they are unavailable (not Linux, an old kernel, a runtime
//! that forbids seccomp), the worker runs without them and the pool logs one warning.

use serde::{Deserialize, Serialize};

/// Variables a worker inherits from the pool's environment: how to log, nothing else.
pub const PASSED_ENV: &[&str] = &[
    crate::telemetry::LOG_LEVEL_ENV,
    crate::telemetry::LOG_FORMAT_ENV,
    "RUST_LOG",
    "RUST_BACKTRACE",
];

/// The worker environment: the [`PASSED_ENV`] variables that are set in this process.
pub fn worker_env() -> Vec<(String, std::ffi::OsString)> {
    PASSED_ENV
        .iter()
        .filter_map(|name| std::env::var_os(name).map(|value| (name.to_string(), value)))
        .collect()
}

/// What a worker managed to give up, as it reports it to the pool after starting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confinement {
    /// `Err` explains why `PR_SET_NO_NEW_PRIVS` could not be set.
    pub no_new_privs: Result<(), String>,
    /// `Err` explains why the seccomp filter could not be installed.
    pub seccomp: Result<(), String>,
}

impl Confinement {
    /// A report that says nothing was confirmed, for `reason`.
    pub fn unknown(reason: String) -> Self {
        Self {
            no_new_privs: Err(reason.clone()),
            seccomp: Err(reason),
        }
    }

    pub fn is_complete(&self) -> bool {
        self.no_new_privs.is_ok() && self.seccomp.is_ok()
    }

    /// One line for the log when something is missing.
    pub fn shortfall(&self) -> Option<String> {
        let mut missing = Vec::new();
        if let Err(e) = &self.no_new_privs {
            missing.push(format!("no-new-privileges ({e})"));
        }
        if let Err(e) = &self.seccomp {
            missing.push(format!("the seccomp filter against network and exec ({e})"));
        }
        (!missing.is_empty()).then(|| {
            format!(
                "hook workers run without {}; the import boundary and the empty environment still apply",
                missing.join(" and ")
            )
        })
    }
}

/// Confines the calling process; call it before starting any thread (threads inherit the
/// filter).
pub fn confine_self() -> Confinement {
    let no_new_privs = set_no_new_privs();
    let seccomp = match &no_new_privs {
        Ok(()) => install_filter(),
        Err(_) => Err("needs no-new-privileges".to_string()),
    };
    Confinement {
        no_new_privs,
        seccomp,
    }
}

#[cfg(target_os = "linux")]
fn set_no_new_privs() -> Result<(), String> {
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) takes integers only.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().to_string())
    }
}

#[cfg(not(target_os = "linux"))]
fn set_no_new_privs() -> Result<(), String> {
    Err("only on Linux".into())
}

/// The system calls the filter refuses.
#[cfg(target_os = "linux")]
pub const DENIED_SYSCALLS: &[(&str, i64)] = &[
    ("socket", libc::SYS_socket),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("execve", libc::SYS_execve),
    ("execveat", libc::SYS_execveat),
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
];

/// The compiled filter: [`DENIED_SYSCALLS`] fail with `EPERM`, everything else is allowed.
#[cfg(target_os = "linux")]
pub fn filter() -> Result<seccompiler::BpfProgram, String> {
    use seccompiler::{SeccompAction, SeccompFilter, TargetArch};
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| e.to_string())?;
    let rules = DENIED_SYSCALLS
        .iter()
        .map(|(_, number)| (*number, Vec::new()))
        .collect();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())
}

#[cfg(target_os = "linux")]
fn install_filter() -> Result<(), String> {
    let program = filter()?;
    seccompiler::apply_filter(&program).map_err(|e| e.to_string())
}

#[cfg(not(target_os = "linux"))]
fn install_filter() -> Result<(), String> {
    Err("only on Linux".into())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Runs `probe` in a forked child after installing the filter there; returns the child's
    /// exit code. The child only makes system calls (no allocation, no locks), which is what a
    /// fork of a multi-threaded test process allows.
    fn in_filtered_child(probe: fn() -> i32) -> i32 {
        let program = filter().expect("filter compiles");
        // SAFETY: fork in a test; the child calls only async-signal-safe functions and _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let prog = libc::sock_fprog {
                len: program.len() as u16,
                filter: program.as_ptr() as *mut libc::sock_filter,
            };
            // SAFETY: prctl and seccomp with a valid program; then the probe and _exit.
            unsafe {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                    || libc::syscall(libc::SYS_seccomp, 1, 0, &prog as *const _) != 0
                {
                    libc::_exit(100);
                }
                libc::_exit(probe());
            }
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status), "child did not exit normally");
        libc::WEXITSTATUS(status)
    }

    fn errno() -> i32 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    #[test]
    fn the_filter_refuses_sockets_and_exec_and_allows_files() {
        // 0: refused with EPERM; 1: allowed (the wrong answer); 2: another error.
        fn inet() -> i32 {
            // SAFETY: plain system call.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
            if fd >= 0 {
                1
            } else if errno() == libc::EPERM {
                0
            } else {
                2
            }
        }
        fn unix() -> i32 {
            // SAFETY: plain system call.
            let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) };
            if fd >= 0 {
                1
            } else if errno() == libc::EPERM {
                0
            } else {
                2
            }
        }
        fn exec() -> i32 {
            let path = c"/bin/true".as_ptr();
            let argv = [path, std::ptr::null()];
            let envp = [std::ptr::null()];
            // SAFETY: execve with NUL-terminated arrays; it returns only on failure.
            unsafe { libc::execve(path, argv.as_ptr(), envp.as_ptr()) };
            if errno() == libc::EPERM { 0 } else { 2 }
        }
        fn open_file() -> i32 {
            // SAFETY: plain system call on a static path.
            let fd = unsafe { libc::open(c"/".as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
            if fd >= 0 { 0 } else { 3 }
        }
        assert_eq!(in_filtered_child(inet), 0, "AF_INET socket");
        assert_eq!(in_filtered_child(unix), 0, "AF_UNIX socket");
        assert_eq!(in_filtered_child(exec), 0, "execve");
        assert_eq!(in_filtered_child(open_file), 0, "open still works");
    }

    #[test]
    fn a_shortfall_names_what_is_missing() {
        let full = Confinement {
            no_new_privs: Ok(()),
            seccomp: Ok(()),
        };
        assert!(full.is_complete());
        assert_eq!(full.shortfall(), None);
        let partial = Confinement {
            no_new_privs: Ok(()),
            seccomp: Err("Operation not permitted".into()),
        };
        assert_eq!(
            partial.shortfall().as_deref(),
            Some(
                "hook workers run without the seccomp filter against network and exec (Operation not permitted); the import boundary and the empty environment still apply"
            )
        );
    }
}
