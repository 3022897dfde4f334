//! A private network namespace for browser tests.
//!
//! Chromium gathers no ICE candidates when loopback is the only interface, and
//! tests must not touch the host's real network. So a browser test binary
//! (`harness = false`) moves itself into a fresh network namespace first thing
//! in `main()`, while it is still single-threaded, with
//! [`enter_private_network`]. Inside, `lo` is up and a veth pair
//! [`HOST_DEV`]/[`PEER_DEV`] carries [`HOST_IP`]/[`PEER_IP`]. Every thread and
//! child process started afterwards (the tokio runtime, Chromium, the Duet
//! services) lives in that namespace; it vanishes when the process exits.
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     let net = duet_tests::netns::enter_private_network().expect("private network");
//!     let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
//!     runtime.block_on(async move {
//!         // Bind services to `net.host_ip`, launch browsers, ...
//!         let _ = net;
//!     });
//!     std::process::ExitCode::SUCCESS
//! }
//! ```
//!
//! What Chromium (156, Debian 12) does on this network, as measured:
//! - A page in a secure context gathers host candidates with the real
//!   addresses on both interfaces (`10.200.0.1`, `10.200.0.2`, UDP and TCP).
//!   Pages served over plain `http://10.200.0.1:PORT` are not secure
//!   contexts (no `navigator.mediaDevices` either); make them secure with
//!   [`LaunchOptions::secure_origin`](crate::browser::LaunchOptions::secure_origin).
//! - A page in an insecure context (plain http, `data:`) gathers no candidates
//!   at all, since the namespace has no default route; with one it would
//!   gather only an mDNS-obfuscated `….local` host candidate.
//!
//! Both addresses are local to the one namespace, so traffic between them is
//! routed over `lo`, not over the veth pair: link shaping with [`netem`] must
//! target `lo` to affect it (which also shapes the DevTools connection).

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The veth end that carries [`HOST_IP`].
pub const HOST_DEV: &str = "duet0";
/// The veth end that carries [`PEER_IP`].
pub const PEER_DEV: &str = "duet1";
/// The address services under test bind to.
pub const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
/// A second local address, for a peer that must not share the host's address.
pub const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
const PREFIX_LEN: u8 = 24;

const NEEDS_ROOT: &str = "this test needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN): \
     it creates its own network namespace; run it as root";

/// The private network created by [`enter_private_network`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestNet {
    /// The address on [`HOST_DEV`] (`10.200.0.1`).
    pub host_ip: IpAddr,
    /// The address on [`PEER_DEV`] (`10.200.0.2`).
    pub peer_ip: IpAddr,
}

/// Whether the process runs with effective uid 0.
pub fn is_root() -> bool {
    #[allow(unsafe_code)]
    // SAFETY: geteuid(2) takes no arguments, cannot fail and touches no memory.
    let euid = unsafe { libc::geteuid() };
    euid == 0
}

/// Moves the whole process into a new network namespace and sets it up:
/// `lo` up, veth pair `duet0` (`10.200.0.1/24`) / `duet1` (`10.200.0.2/24`), both up.
///
/// Call it first thing in `main()` of a `harness = false` test, before any
/// thread (e.g. a tokio runtime) exists; it refuses to run otherwise, since
/// threads that already exist would stay in the host's namespace.
pub fn enter_private_network() -> Result<TestNet> {
    if !is_root() {
        bail!("{NEEDS_ROOT}");
    }
    let threads = thread_count()?;
    if threads != 1 {
        bail!(
            "enter_private_network must run while the process is single-threaded, \
             but it has {threads} threads: call it first thing in main() of a \
             `harness = false` test, before building a tokio runtime"
        );
    }
    unshare_network_namespace()?;

    let host = format!("{HOST_IP}/{PREFIX_LEN}");
    let peer = format!("{PEER_IP}/{PREFIX_LEN}");
    ip(&["link", "set", "lo", "up"])?;
    ip(&[
        "link", "add", HOST_DEV, "type", "veth", "peer", "name", PEER_DEV,
    ])?;
    ip(&["addr", "add", &host, "dev", HOST_DEV])?;
    ip(&["addr", "add", &peer, "dev", PEER_DEV])?;
    ip(&["link", "set", HOST_DEV, "up"])?;
    ip(&["link", "set", PEER_DEV, "up"])?;

    Ok(TestNet {
        host_ip: HOST_IP.into(),
        peer_ip: PEER_IP.into(),
    })
}

/// Shapes `dev` with a netem qdisc: `tc qdisc replace dev <dev> root netem <spec>`,
/// e.g. `netem("lo", "delay 80ms 20ms loss 2%")`.
///
/// Needs the kernel's `sch_netem`; the error says so when it is missing.
pub fn netem(dev: &str, spec: &str) -> Result<()> {
    let mut args = vec!["qdisc", "replace", "dev", dev, "root", "netem"];
    args.extend(spec.split_whitespace());
    run("tc", &args).map_err(|err| {
        if format!("{err:#}").contains("kind is unknown") {
            err.context("this kernel has no netem qdisc (sch_netem is not built in or loaded)")
        } else {
            err
        }
    })
}

/// Removes a netem qdisc that [`netem`] put on `dev`; does nothing if there is none.
pub fn clear_netem(dev: &str) -> Result<()> {
    let out = output("tc", &["qdisc", "show", "dev", dev])?;
    if out.contains(" netem ") {
        run("tc", &["qdisc", "del", "dev", dev, "root"])?;
    }
    Ok(())
}

#[allow(unsafe_code)]
fn unshare_network_namespace() -> Result<()> {
    // SAFETY: unshare(2) takes a flag word and reads or writes no memory of
    // ours, so it cannot break memory safety. It moves only the calling
    // thread; the caller has checked that this is the process's only thread,
    // so the whole process (and every thread and child created later, which
    // inherit the namespace) ends up in the new namespace, none left behind.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EPERM) {
        bail!("unshare(CLONE_NEWNET) was refused (EPERM): {NEEDS_ROOT}");
    }
    Err(err).context("unshare(CLONE_NEWNET)")
}

/// The number of threads in this process, from `/proc/self/status`.
fn thread_count() -> Result<usize> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .context("no Threads: line in /proc/self/status")
}

fn ip(args: &[&str]) -> Result<()> {
    run("ip", args)
}

fn run(program: &str, args: &[&str]) -> Result<()> {
    output(program, args).map(drop)
}

/// Runs `program args`, returning its stdout; fails with its stderr unless it exits 0.
fn output(program: &str, args: &[&str]) -> Result<String> {
    let line = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run `{line}` (is iproute2 installed?)"))?;
    if !out.status.success() {
        bail!(
            "`{line}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
