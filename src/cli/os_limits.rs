//! What the operating system lets the server hold: open files (every
//! connection is one) and the listen backlog (connections waiting to be
//! accepted while `--max-connections` are open).

use std::net::TcpListener;

/// File descriptors kept for everything but inbound connections: the
/// store's files, the runtimes' own, the outbound connections of request
/// nodes (at most half of a small limit).
pub const RESERVED_FILES: u64 = 256;

/// Connections the kernel completes and holds before the server accepts
/// them (the kernel caps it at `net.core.somaxconn`): over
/// `--max-connections`, new connections wait here instead of being refused.
pub const BACKLOG: i32 = 2048;

/// Raises the soft open-files limit (RLIMIT_NOFILE) to the hard limit and
/// returns the soft limit now in force.
#[cfg(unix)]
pub fn raise_open_files() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given, which we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct it is given; no memory is shared.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        limit.rlim_cur = limit.rlim_max;
    }
    Ok(limit.rlim_cur)
}

/// Elsewhere the limit is left as it is (and not known).
#[cfg(not(unix))]
pub fn raise_open_files() -> std::io::Result<u64> {
    Ok(u64::MAX)
}

/// The connections the server may hold open: `wanted`, unless the
/// open-files limit leaves room for fewer once [`RESERVED_FILES`] are kept
/// (half of a limit under twice that).
pub fn connection_cap(wanted: usize, open_files: u64) -> usize {
    let reserved = RESERVED_FILES.min(open_files / 2);
    let room = usize::try_from(open_files - reserved).unwrap_or(usize::MAX);
    wanted.min(room).max(1)
}

/// Sets the listen backlog of a bound socket to [`BACKLOG`] (the standard
/// library's bind uses a fixed, smaller one).
#[cfg(unix)]
pub fn set_backlog(listener: &TcpListener) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: listen() on a socket we own; calling it again only updates the backlog.
    if unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Elsewhere the backlog stays the standard library's.
#[cfg(not(unix))]
pub fn set_backlog(_listener: &TcpListener) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_leave_files_for_the_store_and_request_nodes() {
        // (wanted, open-files limit) → connections
        let cases = [
            (10_000, 1_048_576, 10_000),
            (10_000, 1024, 1024 - 256),
            (16, 1024, 16),
            (10_000, 300, 150),
            (10_000, 1, 1),
            (10_000, u64::MAX, 10_000),
        ];
        for (wanted, files, expected) in cases {
            assert_eq!(
                connection_cap(wanted, files),
                expected,
                "{wanted} wanted, {files} files"
            );
        }
    }
}
