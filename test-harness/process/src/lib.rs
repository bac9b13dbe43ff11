//! `svsm-process` owns every process svsm-vhsm's host tools and tests start (QEMU, swtpm,
//! PostgreSQL, brokers, `svsm-sim` itself in tests) and makes sure none outlives its parent:
//!
//! - the child runs in a process group of its own, so stopping it stops whatever it forked;
//! - it gets `PR_SET_PDEATHSIG(SIGKILL)`: if the parent dies without cleaning up (SIGKILL, an
//!   abort), the kernel kills the child. The signal fires when the *thread* that spawned the
//!   child exits, so spawn from a thread that lives as long as the child should (a test's own
//!   thread is right: the child dies with the test);
//! - [`Child`] kills the whole group and reaps it when dropped: on success, on error, and while
//!   a panic unwinds;
//! - [`Termination`] turns SIGINT and SIGTERM into a flag a server loop polls, so a tool can
//!   persist its state, stop its children and exit with a status that names the signal.
//!
//! It trusts the operating system and nothing else. The only `unsafe` is the `pre_exec` hook
//! (in [`sys`]), which runs between fork and exec and only makes async-signal-safe calls.

#![deny(unsafe_code)]

pub mod postgres;
mod sys;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::io;
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a child could not be started or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// The program could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: io::Error,
    },
    /// Waiting for the child failed.
    #[error("waiting for {program} (pid {pid}): {source}")]
    Wait {
        /// The program.
        program: String,
        /// Its pid.
        pid: u32,
        /// Why.
        source: io::Error,
    },
}

/// A child process in its own process group, killed with its group and reaped when dropped.
#[derive(Debug)]
pub struct Child {
    inner: std::process::Child,
    program: String,
    reaped: Option<ExitStatus>,
}

/// Starts `cmd` tied to this process (see the crate docs).
pub fn spawn(cmd: &mut Command) -> Result<Child, ProcessError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    sys::tie_to_parent(cmd);
    let inner = cmd.spawn().map_err(|source| ProcessError::Spawn {
        program: program.clone(),
        source,
    })?;
    Ok(Child {
        inner,
        program,
        reaped: None,
    })
}

impl Child {
    /// The child's pid (also its process group id).
    pub fn pid(&self) -> u32 {
        self.inner.id()
    }

    /// The program's name, for messages.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// The standard streams the command asked for.
    pub fn inner_mut(&mut self) -> &mut std::process::Child {
        &mut self.inner
    }

    /// Its exit status if it has exited (reaping it), `None` while it runs.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, ProcessError> {
        if let Some(s) = self.reaped {
            return Ok(Some(s));
        }
        let status = self
            .inner
            .try_wait()
            .map_err(|source| self.wait_error(source))?;
        if status.is_some() {
            self.reaped = status;
            // Whatever it forked goes with it.
            self.signal_group(Signal::SIGKILL);
        }
        Ok(status)
    }

    /// Waits up to `timeout` for it to exit by itself.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, ProcessError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait()? {
                return Ok(Some(s));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Asks the group to stop (SIGTERM), waits up to `grace`, then kills it (SIGKILL) and
    /// reaps it. Returns the child's exit status.
    pub fn stop(&mut self, grace: Duration) -> Result<ExitStatus, ProcessError> {
        if let Some(s) = self.reaped {
            return Ok(s);
        }
        self.signal_group(Signal::SIGTERM);
        if let Some(s) = self.wait_timeout(grace)? {
            return Ok(s);
        }
        self.kill()
    }

    /// Kills the group (SIGKILL) and reaps the child.
    pub fn kill(&mut self) -> Result<ExitStatus, ProcessError> {
        if let Some(s) = self.reaped {
            return Ok(s);
        }
        self.signal_group(Signal::SIGKILL);
        let status = self
            .inner
            .wait()
            .map_err(|source| self.wait_error(source))?;
        self.reaped = Some(status);
        Ok(status)
    }

    fn signal_group(&self, signal: Signal) {
        // The group may already be gone (ESRCH): nothing left to stop.
        if let Ok(pid) = i32::try_from(self.inner.id()) {
            let _ = killpg(Pid::from_raw(pid), signal);
        }
    }

    fn wait_error(&self, source: io::Error) -> ProcessError {
        ProcessError::Wait {
            program: self.program.clone(),
            pid: self.inner.id(),
            source,
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.reaped.is_none() {
            let _ = self.kill();
        } else {
            self.signal_group(Signal::SIGKILL);
        }
    }
}

/// SIGINT and SIGTERM, recorded instead of killing the process. A server loop polls
/// [`Termination::received`] and shuts down cleanly; [`Termination::exit_code`] is the
/// conventional 128 + signal number.
#[derive(Clone, Debug)]
pub struct Termination {
    signal: Arc<AtomicUsize>,
}

impl Termination {
    /// Installs the handlers (once per process is enough; more is harmless).
    pub fn install() -> io::Result<Self> {
        let signal = Arc::new(AtomicUsize::new(0));
        for s in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            let flag = signal.clone();
            let value = usize::try_from(s).unwrap_or(usize::MAX);
            signal_hook::flag::register_usize(s, flag, value)?;
        }
        Ok(Termination { signal })
    }

    /// The signal received, if any (2 = SIGINT, 15 = SIGTERM).
    pub fn received(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            s => i32::try_from(s).ok(),
        }
    }

    /// Its name.
    pub fn name(signal: i32) -> &'static str {
        match signal {
            2 => "SIGINT",
            15 => "SIGTERM",
            _ => "a signal",
        }
    }

    /// 128 + the signal number: what a shell reports for a process that a signal ended.
    pub fn exit_code(signal: i32) -> u8 {
        u8::try_from(128 + signal).unwrap_or(u8::MAX)
    }

    /// Sleeps in short steps until `done` returns true or a signal arrives; returns the signal.
    pub fn wait_until(&self, mut done: impl FnMut() -> bool) -> Option<i32> {
        loop {
            if let Some(s) = self.received() {
                return Some(s);
            }
            if done() {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Reads up to `buf.len()` bytes from a UNIX stream socket with one `recvmsg`, returning the
/// count and the file descriptor another process passed with them (SCM_RIGHTS), if any. How
/// QEMU hands a TPM emulator its data channel.
pub fn recv_with_fd(
    stream: &std::os::unix::net::UnixStream,
    buf: &mut [u8],
) -> io::Result<(usize, Option<std::os::fd::OwnedFd>)> {
    sys::recv_with_fd(stream, buf)
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // State is the field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    fn sleeper() -> Command {
        // A shell that forks a grandchild: stopping the child must stop both.
        let mut c = Command::new("sh");
        c.args(["-c", "sleep 300 & echo $!; wait"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        c
    }

    fn grandchild(child: &mut Child) -> u32 {
        use std::io::BufRead;
        let out = child.inner_mut().stdout.take().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(out).read_line(&mut line).unwrap();
        line.trim().parse().unwrap()
    }

    #[test]
    fn drop_kills_the_whole_group() {
        let mut child = spawn(&mut sleeper()).unwrap();
        let (pid, gc) = (child.pid(), grandchild(&mut child));
        assert!(alive(pid) && alive(gc));
        drop(child);
        assert!(!alive(pid), "child");
        std::thread::sleep(Duration::from_millis(100));
        assert!(!alive(gc), "grandchild");
    }

    #[test]
    fn a_panic_still_stops_the_child() {
        let (tx, rx) = std::sync::mpsc::channel();
        let r = std::thread::spawn(move || {
            let mut child = spawn(&mut sleeper()).unwrap();
            tx.send((child.pid(), grandchild(&mut child))).unwrap();
            panic!("the test failed with a child running");
        })
        .join();
        assert!(r.is_err());
        let (pid, gc) = rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(!alive(pid) && !alive(gc));
    }

    #[test]
    fn the_child_dies_with_its_spawning_thread_even_without_drop() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let child = spawn(&mut sleeper()).unwrap();
            tx.send(child.pid()).unwrap();
            // As if the parent were SIGKILLed: no destructor runs.
            std::mem::forget(child);
        })
        .join()
        .unwrap();
        let pid = rx.recv().unwrap();
        // PR_SET_PDEATHSIG delivers SIGKILL; the zombie is reaped here.
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(pid));
        let _ = nix::sys::wait::waitpid(Pid::from_raw(pid as i32), None);
    }

    #[test]
    fn stop_asks_first_then_kills() {
        let mut polite = spawn(Command::new("sleep").arg("300")).unwrap();
        let status = polite.stop(Duration::from_secs(5)).unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(15));
        let mut stubborn =
            spawn(Command::new("sh").args(["-c", "trap '' TERM; sleep 300"])).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let status = stubborn.stop(Duration::from_millis(200)).unwrap();
        assert_eq!(status.signal(), Some(9));
    }

    #[test]
    fn exit_codes_name_the_signal() {
        assert_eq!(Termination::exit_code(15), 143);
        assert_eq!(Termination::exit_code(2), 130);
        assert_eq!(Termination::name(15), "SIGTERM");
    }
}
