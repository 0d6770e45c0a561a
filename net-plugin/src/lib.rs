//! corral's pod network, modelled on CNI (spec 1.1).
//!
//! Gives every pod a veth pair onto a host bridge, an address from a host-local IPAM
//! range, a default route, egress NAT and hostPort mappings, and takes all of it away
//! again on DEL. The daemon calls it in-process; the `corral-bridge` binary puts the CNI
//! protocol (env vars + JSON on stdin/stdout) in front of the same code.
//!
//! The public shape (filled in by the net-plugin issue): `Network::add / del / check /
//! status / gc`, each taking the pod id and the path of its pinned network namespace.

mod error;

pub use error::{Error, Result};
