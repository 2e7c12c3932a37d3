//! A real network made in the test: hosts, each a network namespace with its own address and a
//! virtual cable (a veth pair) into a switch (a bridge, in a namespace of its own), and NAT
//! routers with a private LAN behind them. Programs run inside a host through its
//! [`Launcher`]; the test, which stays in the machine's own namespace, reaches a host's
//! services through sockets made inside the host ([`Host::connect`]) or a [`Forwarder`].
//!
//! Nothing of a network lives in the machine's own namespace, so its addresses (the public
//! side is 10.213.0.0/24, the LAN behind NAT router `k` is 10.213.k.0/24) cannot clash with the
//! machine's networks, nor with other tests' networks. Namespace names carry the test
//! process's id and a counter. Dropping the [`Network`] kills every process inside it and
//! deletes its namespaces, and with them their interfaces and nftables rules, even when a test
//! panics; a network left behind by a test process that was killed is deleted by the next
//! [`Network::new`].
//!
//! Making namespaces takes root. Where it is not allowed, [`Network::new`] says so and returns
//! `None`, and the test skips.

mod browser;
mod socket;
mod tool;

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

pub use socket::Forwarder;

use crate::command::{Dir, TestCommand};
use crate::launcher::Launcher;
use crate::process::Process;

/// The first two bytes of every address of a network.
const NET: [u8; 2] = [10, 213];
/// What every namespace name of a network starts with.
const PREFIX: &str = "mte";
/// The name of a host's (and a router's public) interface, inside its namespace.
const HOST_IF: &str = "eth0";
/// The bridge of a switch, and of a router's LAN.
const BRIDGE: &str = "br0";
/// The nftables table of a NAT router.
const NAT_TABLE: &str = "mtorrent_nat";

/// Networks made by this process so far, for unique namespace names.
static NETWORKS: AtomicU32 = AtomicU32::new(0);

/// A switch that hosts and NAT routers plug into.
#[derive(Debug)]
pub struct Network {
    /// `mte-PID-N`: what every namespace name of this network starts with.
    prefix: String,
    /// The switch's namespace, holding the bridge and the switch ends of the cables.
    switch: String,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Every namespace made, in order.
    namespaces: Vec<String>,
    /// The last byte of the next public address.
    next_public: u8,
    /// The number of NAT routers so far: router `k` has LAN 10.213.k.0/24.
    routers: u8,
    /// The next port number on the switch.
    next_port: u32,
}

/// One machine on a network: a namespace with loopback and one interface, `eth0`, cabled to a
/// switch (or to the LAN of a NAT router, then its default gateway).
#[derive(Debug, Clone)]
pub struct Host {
    name: String,
    namespace: String,
    ip: Ipv4Addr,
    /// The namespace holding the switch end of its cable, and that end's name.
    cable: (String, String),
}

/// A NAT router: a host on the public switch whose LAN hides the hosts behind it, their
/// connections out masqueraded as its public address; port forwards (DNAT) reach them from the
/// public side, nothing else does.
#[derive(Debug)]
pub struct NatHost {
    router: Host,
    /// The number of the LAN: its addresses are 10.213.k.0/24, the router's .1.
    lan: u8,
    /// The last byte of the next LAN address.
    next_lan: Mutex<u8>,
}

impl Network {
    /// Makes a network with an empty switch; `None`, with a message saying why, where network
    /// namespaces cannot be made (not root, or `ip netns add` fails), for the test to skip.
    pub fn new() -> Option<Network> {
        let test = std::thread::current()
            .name()
            .unwrap_or("this test")
            .to_owned();
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping {test}: making network namespaces takes root");
            return None;
        }
        delete_orphans();
        let prefix = format!(
            "{PREFIX}-{}-{}",
            std::process::id(),
            NETWORKS.fetch_add(1, Ordering::SeqCst)
        );
        let switch = format!("{prefix}-switch");
        if let Err(e) = tool::run("ip", &["netns", "add", &switch], None) {
            eprintln!("skipping {test}: cannot make a network namespace: {e}");
            return None;
        }
        let network = Network {
            prefix,
            switch: switch.clone(),
            state: Mutex::new(State {
                namespaces: vec![switch.clone()],
                next_public: 2,
                routers: 0,
                next_port: 0,
            }),
        };
        tool::ip(&["-n", &switch, "link", "add", BRIDGE, "type", "bridge"]);
        tool::ip(&["-n", &switch, "link", "set", BRIDGE, "up"]);
        Some(network)
    }

    /// A new host on the switch, with the next public address (10.213.0.2, .3, ...). `name`
    /// (letters, digits and `-`) shows in its namespace's name.
    pub fn host(&self, name: &str) -> Host {
        let ip = self.next_public_ip();
        self.plug(name, (self.switch.clone(), BRIDGE), ip, None)
    }

    /// A new NAT router on the switch, with the next public address and LAN 10.213.k.0/24
    /// behind it: connections from the LAN out its public side are masqueraded.
    pub fn nat_host(&self, name: &str) -> NatHost {
        let router = self.host(name);
        let lan = {
            let mut state = lock(&self.state);
            state.routers += 1;
            state.routers
        };
        let gateway = Ipv4Addr::new(NET[0], NET[1], lan, 1);
        let ns = router.namespace.as_str();
        tool::ip(&["-n", ns, "link", "add", BRIDGE, "type", "bridge"]);
        tool::ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{gateway}/24"),
            "dev",
            BRIDGE,
        ]);
        tool::ip(&["-n", ns, "link", "set", BRIDGE, "up"]);
        // The namespace's own copy of the setting: the machine's is untouched.
        in_host(
            ns,
            &["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"],
            None,
        );
        let rules = format!(
            "table ip {NAT_TABLE} {{
               chain prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}
               chain postrouting {{
                 type nat hook postrouting priority srcnat; policy accept;
                 oifname \"{HOST_IF}\" masquerade
               }}
               chain forward {{
                 type filter hook forward priority filter; policy accept;
                 iifname \"{HOST_IF}\" ct state established,related accept
                 iifname \"{HOST_IF}\" ct status dnat accept
                 iifname \"{HOST_IF}\" drop
               }}
             }}"
        );
        in_host(ns, &["nft", "-f", "-"], Some(&rules));
        NatHost {
            router,
            lan,
            next_lan: Mutex::new(2),
        }
    }

    /// A new host on the LAN of `nat`, with the next LAN address, the router its default
    /// gateway.
    pub fn host_behind(&self, nat: &NatHost, name: &str) -> Host {
        let last = {
            let mut next = lock(&nat.next_lan);
            *next += 1;
            *next - 1
        };
        let ip = Ipv4Addr::new(NET[0], NET[1], nat.lan, last);
        let gateway = Ipv4Addr::new(NET[0], NET[1], nat.lan, 1);
        self.plug(
            name,
            (nat.router.namespace.clone(), BRIDGE),
            ip,
            Some(gateway),
        )
    }

    /// Cuts `host`'s cable at the switch: a partition, every packet to and from it dropped,
    /// nothing refused; its processes go on running.
    pub fn cut_link(&self, host: &Host) {
        let (ns, end) = &host.cable;
        tool::ip(&["-n", ns, "link", "set", end, "down"]);
    }

    /// Plugs `host`'s cable back in after [`Network::cut_link`].
    pub fn restore_link(&self, host: &Host) {
        let (ns, end) = &host.cable;
        tool::ip(&["-n", ns, "link", "set", end, "up"]);
    }

    fn next_public_ip(&self) -> Ipv4Addr {
        let mut state = lock(&self.state);
        let last = state.next_public;
        assert!(last < 255, "a network holds at most 253 public hosts");
        state.next_public += 1;
        Ipv4Addr::new(NET[0], NET[1], 0, last)
    }

    /// Makes a host's namespace with address `ip` on `eth0`, cabled to bridge `bridge` of
    /// namespace `switch`, with a default route through `gateway` if given.
    fn plug(
        &self,
        name: &str,
        (switch, bridge): (String, &str),
        ip: Ipv4Addr,
        gateway: Option<Ipv4Addr>,
    ) -> Host {
        assert!(
            !name.is_empty()
                && name.len() <= 24
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "a host's name is 1 to 24 letters, digits or '-': {name:?}"
        );
        let namespace = format!("{}-{name}", self.prefix);
        let end = {
            let mut state = lock(&self.state);
            assert!(
                !state.namespaces.contains(&namespace),
                "two hosts named {name}"
            );
            state.next_port += 1;
            format!("p{}", state.next_port)
        };
        tool::ip(&["netns", "add", &namespace]);
        lock(&self.state).namespaces.push(namespace.clone());
        let ns = namespace.as_str();
        tool::ip(&[
            "-n", &switch, "link", "add", &end, "type", "veth", "peer", "name", HOST_IF, "netns",
            ns,
        ]);
        tool::ip(&["-n", &switch, "link", "set", &end, "master", bridge, "up"]);
        tool::ip(&["-n", ns, "addr", "add", &format!("{ip}/24"), "dev", HOST_IF]);
        tool::ip(&["-n", ns, "link", "set", HOST_IF, "up"]);
        tool::ip(&["-n", ns, "link", "set", "lo", "up"]);
        if let Some(gateway) = gateway {
            tool::ip(&[
                "-n",
                ns,
                "route",
                "add",
                "default",
                "via",
                &gateway.to_string(),
            ]);
        }
        Host {
            name: name.to_owned(),
            namespace,
            ip,
            cable: (switch, end),
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let namespaces = std::mem::take(&mut lock(&self.state).namespaces);
        // Hosts before the routers and the switch they are cabled to.
        for namespace in namespaces.iter().rev() {
            delete_namespace(namespace);
        }
    }
}

impl Host {
    /// The name the test gave it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its namespace's name, as `ip netns` knows it.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Its address.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// `IP:port`.
    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::from((self.ip, port))
    }

    /// Starts programs inside it (`ip netns exec`), peers on their default address.
    pub fn launcher(&self) -> Launcher {
        Launcher::wrapped([
            OsString::from(tool::path("ip")),
            "netns".into(),
            "exec".into(),
            self.namespace.clone().into(),
        ])
        .env_remove("MTORRENT_LISTEN")
    }

    /// [`Process::start`] inside it.
    pub fn start<I, S>(&self, bin: &str, args: I, log: &Path) -> Process
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Process::start_with(&self.launcher(), bin, args, log)
    }

    /// [`Dir::command`] inside it.
    pub fn command(&self, dir: &Dir, bin: &str) -> TestCommand {
        dir.command_with(&self.launcher(), bin)
    }

    /// A TCP connection from it to `addr` (one of its own services on 127.0.0.1, or another
    /// host's); fails after [`socket::CONNECT_TIMEOUT`].
    pub fn connect(&self, addr: SocketAddr) -> std::io::Result<TcpStream> {
        self.connect_timeout(addr, socket::CONNECT_TIMEOUT)
    }

    /// [`Host::connect`], failing after `timeout`.
    pub fn connect_timeout(
        &self,
        addr: SocketAddr,
        timeout: std::time::Duration,
    ) -> std::io::Result<TcpStream> {
        socket::connect(&self.namespace, addr, timeout)
    }

    /// A listener on `addr` inside it.
    pub fn listen(&self, addr: SocketAddr) -> std::io::Result<TcpListener> {
        socket::listen(&self.namespace, addr)
    }

    /// Forwards a port of the test's own 127.0.0.1 to `target` as seen from inside it.
    pub fn forward(&self, target: SocketAddr) -> Forwarder {
        Forwarder::start(&self.namespace, target)
            .unwrap_or_else(|e| panic!("cannot forward to {target} in {}: {e}", self.name))
    }

    /// A plain HTTP GET of `path` from `addr`, from this host: the status and the body.
    pub fn http_get(&self, addr: SocketAddr, path: &str) -> (u16, String) {
        let stream = self
            .connect(addr)
            .unwrap_or_else(|e| panic!("{} cannot connect to {addr}: {e}", self.name));
        crate::http_get_over(stream, addr, path)
    }

    /// The `/stats` of the tracker at `addr`, asked from this host.
    pub fn tracker_stats(&self, addr: SocketAddr) -> serde_json::Value {
        crate::parse_stats(self.http_get(addr, "/stats"))
    }

    /// [`crate::wait_for_tracker_stats`], asked from this host.
    pub fn wait_for_tracker_stats(
        &self,
        addr: SocketAddr,
        what: &str,
        check: impl Fn(&serde_json::Value) -> bool,
    ) {
        crate::wait_for_stats(|| self.tracker_stats(addr), what, check);
    }

    /// [`Host::wait_for_tracker_stats`] for a tracker over https with a certificate of `ca`.
    pub fn wait_for_https_tracker_stats(
        &self,
        ca: &crate::tls::TestCa,
        addr: SocketAddr,
        what: &str,
        check: impl Fn(&serde_json::Value) -> bool,
    ) {
        let stats = || {
            let stream = self
                .connect(addr)
                .unwrap_or_else(|e| panic!("{} cannot connect to {addr}: {e}", self.name));
            let response = crate::tls::try_https_get_over(ca, stream, addr, "/stats")
                .unwrap_or_else(|e| panic!("GET https://{addr}/stats from {}: {e}", self.name));
            crate::parse_stats(response)
        };
        crate::wait_for_stats(stats, what, check);
    }

    /// The bytes it has sent out of its interface so far: what its processes uploaded, and a
    /// little more (headers, acknowledgements, its tracker messages).
    pub fn sent_bytes(&self) -> u64 {
        let json = tool::ip(&["-n", &self.namespace, "-j", "-s", "link", "show", HOST_IF]);
        let links: serde_json::Value = serde_json::from_str(&json)
            .unwrap_or_else(|e| panic!("bad `ip -j -s link` output {json:?}: {e}"));
        links[0]["stats64"]["tx"]["bytes"]
            .as_u64()
            .unwrap_or_else(|| panic!("no transmitted bytes in {json}"))
    }
}

impl NatHost {
    /// The router itself, a host on the public switch.
    pub fn router(&self) -> &Host {
        &self.router
    }

    /// Its public address: what the hosts behind it look like from the public side.
    pub fn public_ip(&self) -> Ipv4Addr {
        self.router.ip
    }

    /// Forwards TCP port `public_port` of its public address to port `port` of `host`, a host
    /// behind it (DNAT).
    pub fn forward_port(&self, public_port: u16, host: &Host, port: u16) {
        assert_eq!(
            host.cable.0, self.router.namespace,
            "{} is not behind {}",
            host.name, self.router.name
        );
        in_host(
            &self.router.namespace,
            &[
                "nft",
                "add",
                "rule",
                "ip",
                NAT_TABLE,
                "prerouting",
                "iifname",
                HOST_IF,
                "tcp",
                "dport",
                &public_port.to_string(),
                "dnat",
                "to",
                &host.addr(port).to_string(),
            ],
            None,
        );
    }
}

/// Runs `command` (a system tool and its arguments) inside namespace `ns`, panicking if it
/// fails.
fn in_host(ns: &str, command: &[&str], stdin: Option<&str>) -> String {
    let mut args = vec!["netns", "exec", ns];
    let program = tool::path(command[0]);
    let program = program.to_str().expect("a UTF-8 path");
    args.push(program);
    args.extend_from_slice(&command[1..]);
    tool::run("ip", &args, stdin).unwrap_or_else(|e| panic!("{e}"))
}

/// Kills every process inside namespace `namespace`, then deletes it. Never panics: it runs
/// while tests unwind.
fn delete_namespace(namespace: &str) {
    if let Ok(pids) = tool::run("ip", &["netns", "pids", namespace], None) {
        for pid in pids.split_whitespace().filter_map(|p| p.parse().ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    if let Err(e) = tool::run("ip", &["netns", "delete", namespace], None) {
        eprintln!("cannot delete network namespace {namespace}: {e}");
    }
}

/// Deletes the namespaces of networks whose test process is gone (killed before its networks
/// were dropped).
fn delete_orphans() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let mut parts = name.splitn(3, '-');
        let (Some(PREFIX), Some(pid)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
            delete_namespace(&name);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
