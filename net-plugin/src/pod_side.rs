//! Inside the pod's namespace: `lo` up, the address, the default route; and CHECK's
//! view of them.

use std::net::{IpAddr, Ipv4Addr};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use crate::nl;
use crate::{Error, Result};

/// The pod's addressing.
pub(crate) struct PodAddr {
    pub ifname: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
}

/// Brings `lo` and `ifname` (created in the pod by the veth request) up and gives
/// `ifname` its address and the default route. Returns the interface's MAC.
pub(crate) async fn configure(pod: &Handle, a: &PodAddr) -> Result<String> {
    let lo_up = async {
        pod.link()
            .set(LinkUnspec::new_with_name("lo").up().build())
            .execute()
            .await
            .map_err(|e| Error::netlink("set lo up in pod", e))
    };
    let eth = async {
        let link = nl::link_by_name(pod, &a.ifname)
            .await
            .map_err(|e| Error::netlink(format!("look up {:?} in pod", a.ifname), e))?
            .ok_or_else(|| {
                Error::io(
                    format!("look up {:?} in pod", a.ifname),
                    std::io::Error::other("vanished right after creation"),
                )
            })?;
        let index = link.header.index;
        pod.link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("set {:?} up", a.ifname), e))?;
        pod.address()
            .add(index, a.ip.into(), a.prefix)
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("add {}/{} to {:?}", a.ip, a.prefix, a.ifname), e))?;
        let route = RouteMessageBuilder::<Ipv4Addr>::new().gateway(a.gateway).output_interface(index).build();
        pod.route()
            .add(route)
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("add default route via {}", a.gateway), e))?;
        Ok(nl::mac(&link).unwrap_or_default())
    };
    let ((), mac) = futures_util::try_join!(lo_up, eth)?;
    Ok(mac)
}

/// What CHECK expects inside the pod; returns what is wrong, if anything.
pub(crate) async fn check(pod: &Handle, a: &PodAddr) -> Result<Option<String>> {
    let Some(link) = nl::link_by_name(pod, &a.ifname)
        .await
        .map_err(|e| Error::netlink(format!("look up {:?} in pod", a.ifname), e))?
    else {
        return Ok(Some(format!("no interface {:?} in the pod", a.ifname)));
    };
    let index = link.header.index;
    let addrs: Vec<_> = pod
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(|e| Error::netlink("list pod addresses", e))?;
    let has_ip = addrs.iter().any(|m| {
        m.header.prefix_len == a.prefix
            && m.attributes.iter().any(|at| matches!(at, AddressAttribute::Address(IpAddr::V4(ip)) if *ip == a.ip))
    });
    if !has_ip {
        return Ok(Some(format!("{:?} lacks {}/{}", a.ifname, a.ip, a.prefix)));
    }
    let routes: Vec<_> = pod
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(|e| Error::netlink("list pod routes", e))?;
    let has_default = routes.iter().any(|r| {
        r.header.destination_prefix_length == 0
            && r.attributes
                .iter()
                .any(|at| matches!(at, RouteAttribute::Gateway(RouteAddress::Inet(gw)) if *gw == a.gateway))
            && r.attributes.iter().any(|at| matches!(at, RouteAttribute::Oif(i) if *i == index))
    });
    if !has_default {
        return Ok(Some(format!("no default route via {} on {:?}", a.gateway, a.ifname)));
    }
    Ok(None)
}
