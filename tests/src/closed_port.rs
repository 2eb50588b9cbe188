//! A loopback port that stays closed for as long as the test holds it.
//!
//! Binding a listener to port 0 and dropping it leaves a port nobody answers on
//! — until the kernel hands the same port to the next process that asks for an
//! ephemeral one (a coordinator the test starts a moment later, say), and the
//! "dead" endpoint answers after all. A socket that is bound but never listens
//! keeps the port reserved: connections to it are refused (RST), and no other
//! socket is given it while this one lives.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, getsockname, socket};

/// A reserved, refusing port on 127.0.0.1.
pub struct ClosedPort {
    _socket: OwnedFd,
    port: u16,
}

impl ClosedPort {
    pub fn new() -> ClosedPort {
        let socket = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .expect("a TCP socket");
        bind(socket.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0)).expect("bind 127.0.0.1:0");
        let addr: SockaddrIn = getsockname(socket.as_raw_fd()).expect("getsockname");
        ClosedPort {
            _socket: socket,
            port: addr.port(),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

impl Default for ClosedPort {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_refused_and_the_port_is_not_handed_out() {
        let closed = ClosedPort::new();
        let err = std::net::TcpStream::connect(("127.0.0.1", closed.port())).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
        assert!(std::net::TcpListener::bind(("127.0.0.1", closed.port())).is_err());
        for _ in 0..200 {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            assert_ne!(l.local_addr().unwrap().port(), closed.port());
        }
    }
}
