//! The operating-system glue that needs `unsafe`: what the child does between fork and exec, and
//! taking ownership of a file descriptor another process passed over a UNIX socket.

#![allow(unsafe_code)]

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
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

/// One `recvmsg` on `stream` into `buf`: the bytes read and the last file descriptor passed with
/// them (SCM_RIGHTS), owned and close-on-exec; any earlier one in the same message is closed.
pub(crate) fn recv_with_fd(
    stream: &UnixStream,
    buf: &mut [u8],
) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 4]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(io::Error::from)?;
    let mut fd = None;
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for raw in fds {
                // SAFETY: the kernel installed `raw` in this process for this message
                // (SCM_RIGHTS); nothing else refers to it, so it is owned exactly once here.
                fd = Some(unsafe { OwnedFd::from_raw_fd(raw) });
            }
        }
    }
    Ok((msg.bytes, fd))
}
