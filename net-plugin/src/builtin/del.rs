//! DEL and GC: take everything of an attachment away, with or without its record.

use std::collections::HashSet;

use super::{Bridge, StepTimer};
use crate::ipam::Owner;
use crate::records::Record;
use crate::types::Attachment;
use crate::veth::{self, VethOwner};
use crate::{Error, Result, nl};

impl Bridge {
    /// DEL: everything of the attachment, found by record or by owner.
    pub(super) async fn del_attachment(&self, a: &Attachment<'_>) -> Result<()> {
        a.validate()?;
        let record = self.records.load(a.pod_id, a.ifname)?;
        self.unwire(a.pod_id, a.ifname, record.as_ref()).await
    }

    /// Removes everything of one attachment; `record` speeds it up when present.
    /// Runs every step even if one fails; returns the first error.
    async fn unwire(&self, pod_id: &str, ifname: &str, record: Option<&Record>) -> Result<()> {
        let mut steps = StepTimer::new("DEL", pod_id);
        let mut first_err: Option<Error> = None;
        let mut keep = |r: Result<()>| {
            if let Err(e) = r {
                tracing::warn!(pod = pod_id, error = %e, "DEL step failed");
                first_err.get_or_insert(e);
            }
        };

        // The veth: deleting the host end takes the pod end (and its address and
        // routes) with it.
        let vowner =
            VethOwner { network: self.plan.cfg.name.clone(), pod_id: pod_id.to_owned(), ifname: ifname.to_owned() };
        let veth = async {
            let host = &self.host()?;
            if let Some(link) = veth::find(host, &vowner, record.map(|r| r.host_veth.as_str())).await? {
                let name = nl::name(&link).unwrap_or_default().to_owned();
                veth::delete_index(host, link.header.index, &name).await?;
            }
            Ok(())
        };
        // hostPorts: only pods that had some (or whose record is lost) touch nft.
        let ports = async {
            match record {
                Some(r) if r.port_mappings.is_empty() => Ok(()),
                Some(r) => self.nft.del_ports(pod_id, ifname, &r.port_mappings).await,
                None => self.nft.del_ports(pod_id, ifname, &[]).await,
            }
        };
        // Both wait on the kernel (a veth's unregistration waits out an RCU grace
        // period; nft loads its cache): run them side by side.
        let (veth, ports) = tokio::join!(veth, ports);
        let veth_gone = veth.is_ok();
        keep(veth);
        keep(ports);
        steps.mark("veth + hostPorts");

        // The address last, and only once no interface holds it any more: freeing it
        // while the old veth lives could hand it to a second pod. (A failed DEL keeps
        // the record; the retry or GC frees it.)
        if veth_gone {
            let owner = Owner::new(pod_id, ifname);
            keep(self.ipam(move |ipam| ipam.release_owner(&owner).map(drop)).await);
            steps.mark("ipam");
        }
        steps.done();

        match first_err {
            None => self.records.remove(pod_id, ifname),
            Some(e) => Err(e),
        }
    }

    /// GC: removes every attachment (record, veth, address, hostPorts) of a pod not
    /// in `live_pod_ids`, including pieces no record describes.
    pub(super) async fn collect_garbage(&self, live_pod_ids: &[String]) -> Result<()> {
        let live: HashSet<&str> = live_pod_ids.iter().map(String::as_str).collect();
        self.setup().await?;
        let mut first_err = None;

        for record in self.records.list()? {
            if !live.contains(record.pod_id.as_str()) {
                tracing::info!(pod = record.pod_id, "GC: removing attachment");
                if let Err(e) = self.unwire(&record.pod_id, &record.ifname, Some(&record)).await {
                    first_err.get_or_insert(e);
                }
            }
        }
        self.records.remove_unreadable()?;

        // Whatever no record describes: veths by alias, IPAM by owner, nft by comment.
        let host = &self.host()?;
        for (link, owner) in veth::owned_links(host, &self.plan.cfg.name).await? {
            if !live.contains(owner.pod_id.as_str()) {
                let name = nl::name(&link).unwrap_or_default().to_owned();
                tracing::info!(veth = name, pod = owner.pod_id, "GC: removing veth");
                if let Err(e) = veth::delete_index(host, link.header.index, &name).await {
                    first_err.get_or_insert(e);
                }
            }
        }
        let live_owned: HashSet<String> = live.iter().map(|s| s.to_string()).collect();
        let freed = self.ipam(move |ipam| ipam.release_unless(|o| live_owned.contains(&o.pod_id))).await?;
        if !freed.is_empty() {
            tracing::info!(?freed, "GC: released addresses");
        }
        let stale: Vec<_> = self
            .nft
            .list_ports()
            .await?
            .into_iter()
            .filter(|e| !e.pod_id().is_some_and(|p| live.contains(p)))
            .collect();
        if let Err(e) = self.nft.delete_elements(&stale).await {
            first_err.get_or_insert(e);
        }
        first_err.map_or(Ok(()), Err)
    }
}
