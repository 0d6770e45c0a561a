//! The few kernel knobs the network needs, written only when they differ.

use std::fs;

use crate::{Error, Result};

/// Sets `/proc/sys/<key>` (dots as slashes) to `value` unless it already is.
pub(crate) fn ensure(key: &str, value: &str) -> Result<()> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    if fs::read_to_string(&path).is_ok_and(|v| v.trim() == value) {
        return Ok(());
    }
    fs::write(&path, value).map_err(|e| Error::io(format!("sysctl {key}={value} ({path})"), e))?;
    tracing::info!(key, value, "sysctl set");
    Ok(())
}

/// Reads `/proc/sys/<key>`.
pub(crate) fn read(key: &str) -> Option<String> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    fs::read_to_string(path).ok().map(|v| v.trim().to_owned())
}

/// Packet forwarding between the bridge and the host's other interfaces.
pub(crate) fn enable_ip_forward() -> Result<()> {
    ensure("net.ipv4.ip_forward", "1")
}

/// Lets DNAT'ed packets from `127.0.0.1` leave through `ifname` (hostPort on localhost).
/// Interface names may hold dots, which a sysctl key path cannot; write the file directly.
pub(crate) fn enable_route_localnet(ifname: &str) -> Result<()> {
    let path = format!("/proc/sys/net/ipv4/conf/{ifname}/route_localnet");
    if fs::read_to_string(&path).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    fs::write(&path, "1").map_err(|e| Error::io(format!("enable route_localnet ({path})"), e))
}
