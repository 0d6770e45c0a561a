//! The host bridge: created on first use, idempotently, with the gateway address.

use std::net::Ipv4Addr;

use rtnetlink::packet_route::link::InfoKind;
use rtnetlink::{Handle, LinkBridge, LinkUnspec};
use sha2::{Digest, Sha256};

use crate::nl;
use crate::{Error, Result};

/// Makes sure bridge `name` exists, is up and holds `gateway/prefix`; returns its index.
///
/// Safe to race with other processes doing the same (`corral-bridge` instances): every
/// "already exists" is success. An existing interface of that name that is not a bridge
/// is an error rather than something to repurpose.
pub(crate) async fn ensure(handle: &Handle, name: &str, gateway: Ipv4Addr, prefix: u8) -> Result<u32> {
    let link = match nl::link_by_name(handle, name)
        .await
        .map_err(|e| Error::netlink(format!("look up bridge {name:?}"), e))?
    {
        Some(link) => link,
        None => {
            create(handle, name).await?;
            nl::link_by_name(handle, name)
                .await
                .map_err(|e| Error::netlink(format!("look up bridge {name:?}"), e))?
                .ok_or_else(|| {
                    Error::io(format!("create bridge {name:?}"), std::io::Error::other("vanished right after creation"))
                })?
        }
    };
    if nl::kind(&link) != Some(&InfoKind::Bridge) {
        return Err(Error::InvalidConfig(format!("interface {name:?} exists and is not a bridge")));
    }
    let index = link.header.index;
    if !nl::is_up(&link) {
        handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("set bridge {name:?} up"), e))?;
    }
    match handle.address().add(index, gateway.into(), prefix).execute().await {
        Ok(()) => tracing::info!(bridge = name, %gateway, prefix, "gateway address added"),
        Err(e) if nl::is_exists(&e) => {}
        Err(e) => {
            return Err(Error::netlink(format!("add {gateway}/{prefix} to bridge {name:?}"), e));
        }
    }
    Ok(index)
}

async fn create(handle: &Handle, name: &str) -> Result<()> {
    let msg = LinkBridge::new(name).address(bridge_mac(name).to_vec()).up().build();
    match handle.link().add(msg).execute().await {
        Ok(()) => {
            tracing::info!(bridge = name, "bridge created");
            Ok(())
        }
        Err(e) if nl::is_exists(&e) => Ok(()),
        Err(e) => Err(Error::netlink(format!("create bridge {name:?}"), e)),
    }
}

/// A fixed, locally administered MAC for the bridge. Without it the bridge takes the
/// lowest MAC of its ports, which changes when pods come and go, and every pod's ARP
/// entry for the gateway goes stale.
fn bridge_mac(name: &str) -> [u8; 6] {
    let h = Sha256::digest(name.as_bytes());
    [0x02, h[0], h[1], h[2], h[3], h[4]]
}
