//! Loopback ports for the suites' servers, and whether the server we started holds one.
//!
//! A port found free (bound to port 0, then released) is only a candidate until our server
//! binds it: in between (Viceroy compiles the module for seconds first) another process on
//! the machine may take it, and a connect would then be answered by a server that is not
//! ours. CI once saw a service taken for ready that refused its first requests. So
//! readiness is asked of the kernel, whose `/proc` says which process holds a listening
//! socket on a port; a server that lost the race gets another port.

use std::net::TcpStream;

/// A loopback port nobody listens on now.
pub fn free() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

/// Whether process `pid` listens on `port`. Without Linux's `/proc`, whether anything
/// accepts connections there.
pub fn listens(pid: u32, port: u16) -> bool {
    let Some(sockets) = listening_sockets(port) else {
        return TcpStream::connect(("127.0.0.1", port)).is_ok();
    };
    let Ok(descriptors) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    descriptors
        .flatten()
        .filter_map(|descriptor| std::fs::read_link(descriptor.path()).ok())
        .any(|target| {
            sockets
                .iter()
                .any(|socket| target.as_os_str() == socket.as_str())
        })
}

/// The `socket:[inode]` names of the sockets listening on `port`, from the kernel's TCP
/// tables (None where there are none to read).
fn listening_sockets(port: u16) -> Option<Vec<String>> {
    const LISTEN: &str = "0A";
    let local = format!(":{port:04X}");
    let mut sockets = Vec::new();
    let mut read_any = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(table) = std::fs::read_to_string(table) else {
            continue;
        };
        read_any = true;
        // sl local_address rem_address st tx_queue:rx_queue tr:when retrnsmt uid timeout inode
        for line in table.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if let [_, address, _, state, _, _, _, _, _, inode, ..] = fields[..] {
                if address.ends_with(&local) && state == LISTEN {
                    sockets.push(format!("socket:[{inode}]"));
                }
            }
        }
    }
    read_any.then_some(sockets)
}
