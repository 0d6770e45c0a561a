//! corral's pod network, modelled on CNI (spec 1.1).
//!
//! Two implementations of one interface, [`PodNetwork`]:
//! - [`Bridge`], the builtin network: a veth pair from each pod onto a host bridge,
//!   an address from a host-local IPAM range, a default route, egress NAT and hostPort
//!   mappings in one nftables table, all undone on DEL. The daemon calls it in-process;
//!   the `corral-bridge` binary ([`plugin`]) puts the CNI protocol in front of it.
//! - [`cni::CniNetwork`], the runtime side of CNI: it runs standard plugin binaries
//!   from a conflist, as containerd does, and caches results so DEL works after a
//!   restart.
//!
//! The daemon holds a `Box<dyn PodNetwork>` chosen by its config.

mod bridge;
mod builtin;
pub mod cni;
mod config;
mod error;
mod fsutil;
mod ipam;
mod netns;
mod nft;
mod nl;
pub mod plugin;
mod pod_side;
mod records;
mod sysctl;
mod types;
mod veth;

pub use builtin::Bridge;
pub use config::BridgeConfig;
pub use error::{Error, Result};
pub use types::{
    AddResult, Attachment, Dns, Interface, IpConfig, PortMapping, Protocol, Route, validate_ifname, validate_pod_id,
};

/// The CNI spec version this crate speaks and reports.
pub const CNI_VERSION: &str = "1.1.0";

/// A pod network: the CNI operations, in-process.
///
/// Every method may be called concurrently for different pods.
#[async_trait::async_trait]
pub trait PodNetwork: Send + Sync {
    /// Connects the pod (CNI ADD). A failed ADD leaves nothing behind. ADD into a netns
    /// that does not exist fails with [`Error::NetnsMissing`] before allocating anything.
    async fn add(&self, a: &Attachment<'_>) -> Result<AddResult>;

    /// Disconnects the pod (CNI DEL): idempotent, succeeds when things are already
    /// gone, works when the netns no longer exists, and frees the address and rules.
    async fn del(&self, a: &Attachment<'_>) -> Result<()>;

    /// Verifies the pod's network is as ADD left it (CNI CHECK).
    async fn check(&self, a: &Attachment<'_>) -> Result<()>;

    /// Whether the network can wire pods now (CNI STATUS; CRI `NetworkReady`).
    /// The error's message is the reason.
    async fn status(&self) -> Result<()>;

    /// Removes every attachment of pods not in `live_pod_ids` (CNI GC). The daemon runs
    /// it at start with the sandboxes it knows.
    async fn gc(&self, live_pod_ids: &[String]) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The daemon holds either implementation behind one pointer, across tasks.
    #[test]
    fn both_networks_fit_behind_one_trait_object() {
        let nets: Vec<std::sync::Arc<dyn PodNetwork>> = vec![
            std::sync::Arc::new(Bridge::new(BridgeConfig::default()).unwrap()),
            std::sync::Arc::new(cni::CniNetwork::new(cni::CniConfig::default())),
        ];
        fn send_sync<T: Send + Sync + ?Sized>(_: &T) {}
        nets.iter().for_each(|n| send_sync(n.as_ref()));
        assert_eq!(nets.len(), 2);
    }
}
