//! A cgroup v2 hierarchy rooted at any directory.
//!
//! `cgroups-rs`' own `V2` hierarchy hard-codes `/sys/fs/cgroup` (its root field is private
//! and `subsystems()` reads `/sys/fs/cgroup/cgroup.controllers`). This implementation of its
//! public `Hierarchy` trait takes the root as a parameter and otherwise builds the same
//! controllers, so that all of cgroups-rs' v2 file writing runs unchanged against a fake
//! cgroupfs tree in a tempdir (the v2 tests), or a cgroup2 mounted somewhere else.

use std::path::{Path, PathBuf};

use cgroups_rs::fs::cgroup::Cgroup;
use cgroups_rs::fs::{Hierarchy, Subsystem};
use cgroups_rs::fs::{cpu, cpuset, freezer, hugetlb, memory, pid};

/// cgroup v2 mounted at `root`.
#[derive(Debug, Clone)]
pub struct V2At {
    root: PathBuf,
}

impl V2At {
    /// The unified hierarchy mounted at `root`.
    pub fn new(root: &Path) -> V2At {
        V2At { root: root.to_path_buf() }
    }
}

impl Hierarchy for V2At {
    fn v2(&self) -> bool {
        true
    }

    fn subsystems(&self) -> Vec<Subsystem> {
        let listed = std::fs::read_to_string(self.root.join("cgroup.controllers")).unwrap_or_default();
        // The freezer is core functionality in v2 (cgroup.freeze), not a listed controller.
        let names = listed.split_whitespace().chain(std::iter::once("freezer"));
        let (root, base) = (self.root.clone(), PathBuf::new());
        names
            .filter_map(|name| {
                Some(match name {
                    "cpu" => Subsystem::Cpu(cpu::CpuController::new(root.clone(), base.clone(), true)),
                    "cpuset" => Subsystem::CpuSet(cpuset::CpuSetController::new(root.clone(), base.clone(), true)),
                    "memory" => Subsystem::Mem(memory::MemController::new(root.clone(), base.clone(), true)),
                    "pids" => Subsystem::Pid(pid::PidController::new(root.clone(), base.clone(), true)),
                    "hugetlb" => Subsystem::HugeTlb(hugetlb::HugeTlbController::new(root.clone(), base.clone(), true)),
                    "freezer" => Subsystem::Freezer(freezer::FreezerController::new(root.clone(), base.clone(), true)),
                    _ => return None,
                })
            })
            .collect()
    }

    fn root(&self) -> PathBuf {
        self.root.clone()
    }

    fn root_control_group(&self) -> Cgroup {
        Cgroup::load(Box::new(self.clone()), "")
    }

    fn parent_control_group(&self, path: &str) -> Cgroup {
        let parent = Path::new(path).parent().unwrap_or(Path::new(""));
        Cgroup::load(Box::new(self.clone()), parent)
    }
}
