//! The one platform hook: what the child does between fork and exec.

#![allow(unsafe_code)]

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Puts the child in a new process group and asks the kernel to SIGKILL it when the spawning
/// thread exits.
pub(crate) fn tie_to_parent(cmd: &mut Command) {
    cmd.process_group(0);
    // The parent's pid before the fork: if it is gone by the time the hook runs, the death
    // signal would never come, so the child exits at once.
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec; it only calls prctl(2) and
    // getppid(2), both async-signal-safe, allocates nothing and touches no lock.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            if nix::unistd::getppid().as_raw() as u32 != parent {
                return Err(std::io::Error::other("parent exited before exec"));
            }
            Ok(())
        });
    }
}
