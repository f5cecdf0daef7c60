//! The two-host mirror: vm1 and the load client as network namespaces on a bridge, vm2 as
//! the machine's own namespace (so the gateway on vm2 also serves 127.0.0.1:8080, as the
//! README promises).
//!
//! ```text
//!   [netns <name>-vm1] eth0 10.77.N.1 ──veth── bridge prbrN 10.77.N.2 (vm2 = this host)
//!   [netns <name>-cl ] eth0 10.77.N.3 ──veth──┘
//! ```
//!
//! Which namespace a process runs in follows from the address it listens on: every
//! start function in this crate builds its command with [`command`], which wraps it in
//! `ip netns exec` when the address belongs to a namespace registered here. Cutting the
//! vm1 link ([`TwoHost::cut`]) takes its veth down: vm1 is then unreachable from vm2 and
//! the client, and the other way round.

use parking_lot::RwLock;
use std::ffi::OsStr;
use std::process::Command;

/// (address, namespace) pairs.
static NAMESPACES: RwLock<Vec<(String, String)>> = RwLock::new(Vec::new());

/// A command for `program`, run inside the namespace that owns `addr` (`ip` or
/// `ip:port`), or directly when no namespace owns it.
pub fn command(addr: &str, program: impl AsRef<OsStr>) -> Command {
    let ip = addr.rsplit_once(':').map_or(addr, |(ip, _)| ip);
    let ns = NAMESPACES
        .read()
        .iter()
        .find(|(a, _)| a == ip)
        .map(|(_, ns)| ns.clone());
    match ns {
        Some(ns) => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", &ns]).arg(program);
            command
        }
        None => Command::new(program),
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    crate::run_tool("ip", args)
}

pub struct TwoHost {
    pub vm1: String,
    pub vm2: String,
    pub client: String,
    pub vm1_ns: String,
    pub client_ns: String,
    bridge: String,
    vm1_link: String,
    client_link: String,
}

impl TwoHost {
    /// Creates the namespaces, veths and bridge for subnet `10.77.<subnet>.0/24`. `name`
    /// (≤ 8 characters) prefixes the namespaces. Leftovers of an earlier run with the same
    /// names are removed first.
    pub fn create(name: &str, subnet: u8) -> Result<Self, String> {
        let topology = Self::layout(name, subnet);
        topology.remove();
        let result = (|| {
            ip(&["link", "add", &topology.bridge, "type", "bridge"])?;
            ip(&[
                "addr",
                "add",
                &format!("{}/24", topology.vm2),
                "dev",
                &topology.bridge,
            ])?;
            ip(&["link", "set", &topology.bridge, "up"])?;
            for (ns, link, addr) in [
                (&topology.vm1_ns, &topology.vm1_link, &topology.vm1),
                (&topology.client_ns, &topology.client_link, &topology.client),
            ] {
                ip(&["netns", "add", ns])?;
                ip(&["-n", ns, "link", "set", "lo", "up"])?;
                ip(&[
                    "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", ns,
                ])?;
                ip(&["link", "set", link, "master", &topology.bridge])?;
                ip(&["link", "set", link, "up"])?;
                ip(&[
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{addr}/24"),
                    "dev",
                    "eth0",
                ])?;
                ip(&["-n", ns, "link", "set", "eth0", "up"])?;
            }
            Ok::<_, String>(())
        })();
        if let Err(error) = result {
            topology.remove();
            return Err(error);
        }
        topology.register();
        Ok(topology)
    }

    fn layout(name: &str, subnet: u8) -> Self {
        let net = format!("10.77.{subnet}");
        Self {
            vm1: format!("{net}.1"),
            vm2: format!("{net}.2"),
            client: format!("{net}.3"),
            vm1_ns: format!("{name}-vm1"),
            client_ns: format!("{name}-cl"),
            bridge: format!("prbr{subnet}"),
            vm1_link: format!("prv1-{subnet}"),
            client_link: format!("prcl-{subnet}"),
        }
    }

    fn register(&self) {
        let mut namespaces = NAMESPACES.write();
        namespaces.push((self.vm1.clone(), self.vm1_ns.clone()));
        namespaces.push((self.client.clone(), self.client_ns.clone()));
    }

    /// True when this machine lets us create network namespaces (root, not a restricted
    /// container).
    pub fn available() -> bool {
        // A name per call: two tests of one binary probing at once (the quick bench and
        // the short soak) must not add or delete each other's probe.
        static PROBES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let probe = format!("prprobe{}-{n}", std::process::id());
        let ok = ip(&["netns", "add", &probe]).is_ok();
        let _ = ip(&["netns", "del", &probe]);
        ok
    }

    /// A command run in the client namespace (the load generator).
    pub fn client_command(&self, program: impl AsRef<OsStr>) -> Command {
        command(&self.client, program)
    }

    /// Cuts vm1 off the network (its veth goes down).
    pub fn cut(&self) -> Result<(), String> {
        ip(&["link", "set", &self.vm1_link, "down"])
    }

    /// Puts vm1 back.
    pub fn heal(&self) -> Result<(), String> {
        ip(&["link", "set", &self.vm1_link, "up"])
    }

    fn remove(&self) {
        let _ = ip(&["netns", "del", &self.vm1_ns]);
        let _ = ip(&["netns", "del", &self.client_ns]);
        let _ = ip(&["link", "del", &self.vm1_link]);
        let _ = ip(&["link", "del", &self.client_link]);
        let _ = ip(&["link", "del", &self.bridge]);
    }

    /// Removes the namespaces and links (processes inside must be stopped first).
    pub fn destroy(self) {
        NAMESPACES
            .write()
            .retain(|(_, ns)| *ns != self.vm1_ns && *ns != self.client_ns);
        self.remove();
    }

    /// Registers the namespaces of a topology created by an earlier process (`xtask up`),
    /// so that later commands (`xtask` restarts, tests) start processes in the right place.
    pub fn attach(name: &str, subnet: u8) -> Self {
        let topology = Self::layout(name, subnet);
        topology.register();
        topology
    }
}
