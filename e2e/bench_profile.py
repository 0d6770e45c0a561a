#!/usr/bin/env python3
"""Where corral's time goes: sums the blocking syscalls of an `strace -f -T -y` log.

    bench_profile.py TRACE RESULTS.json CORRAL_LOG > profile.md

TRACE is corral (daemon, monitors, exec helpers) under strace (see e2e/bench-profile.sh),
RESULTS.json what `bench run` measured meanwhile (how many of each RPC ran), CORRAL_LOG the
daemon's log (its network operations report their own duration). Syscalls are grouped by
kind and target (ids and the work dir replaced), so "write .../cgroup.procs" or "fsync
root/containers" add up over the run; the table divides by the number of pod cycles.
Durations are strace's own (-T) and include tracing overhead: read them as proportions.
"""

import json
import re
import sys
from collections import Counter

LINE = re.compile(r"^(\d+)\s+\S+ (?:<\.\.\. )?(\w+)(?: resumed>|\()(.*) <([0-9.]+)>$")
NETLINK_TYPE = re.compile(r"nlmsg_type=(RTM_\w+)")
ID = re.compile(r"[0-9a-f]{64}")
NET_OP = re.compile(r'network operation done op="(\w+)".* us=(\d+)')


def target(syscall: str, args: str, workdir: str) -> str:
    """What the syscall worked on, normalized so that repeated operations group together."""
    fd = re.match(r"\d+<([^>]*)>", args)
    if syscall in ("mount", "umount2", "mkdir", "rmdir", "execve", "unlink", "rename"):
        paths = re.findall(r'"([^"]*)"', args)
        what = paths[1] if syscall == "mount" and len(paths) > 1 else (paths[0] if paths else "")
    elif syscall in ("sendto", "sendmsg"):
        kind = NETLINK_TYPE.search(args)
        what = f"netlink {kind.group(1)}" if kind else ("socket" if fd else "")
    else:
        what = fd.group(1) if fd else ""
    what = ID.sub("<id>", what.replace(workdir, "<work>"))
    what = re.sub(r"/sys/fs/cgroup/[\w,=]+/", "/sys/fs/cgroup/<ctrl>/", what)
    what = re.sub(r"(socket|pipe|anon_inode):\[?\w*\]?", r"\1", what)
    return re.sub(r"\.tmp[-\d]*", ".tmp", what)


def main() -> None:
    trace, results_path, log_path = sys.argv[1:4]
    with open(results_path) as f:
        results = json.load(f)
    endpoint = results["runtime"]["endpoint"]
    workdir = endpoint.removeprefix("unix://").rsplit("/", 1)[0]
    measured = sum(row["summary"]["n"] for row in results["latency"] if row["key"] == "full_cycle")
    cycles = measured + results["settings"]["warmup"]  # the warm-up cycles are traced too

    total: Counter = Counter()
    count: Counter = Counter()
    with open(trace, errors="replace") as f:
        for line in f:
            m = LINE.match(line.rstrip("\n"))
            if not m:
                continue
            syscall, args, secs = m.group(2), m.group(3), float(m.group(4))
            key = (syscall, target(syscall, args, workdir))
            total[key] += secs * 1000
            count[key] += 1

    print("# Where corral's time goes (strace of the daemon and its helpers)\n")
    print(
        f"Profile run: {cycles} full pod cycles (the container image pull too: its `syncfs` is not per cycle) "
        f"({results['runtime']['reported']}). Durations are strace's, inflated by tracing: compare rows, "
        "not absolute values. `per cycle` divides by the full-cycle count.\n"
    )
    print("## Median latency during the profile (ms)\n")
    print("| scenario | median |\n|---|---:|")
    for row in results["latency"]:
        if row["summary"]:
            print(f"| {row['title']} | {row['summary']['median_ms']:.2f} |")
    print("\n## Blocking syscalls, by total time\n")
    print("| syscall | target | calls | total ms | avg ms | ms per cycle |")
    print("|---|---|---:|---:|---:|---:|")
    for key, ms in total.most_common(30):
        syscall, what = key
        print(f"| {syscall} | `{what or '-'}` | {count[key]} | {ms:.1f} | {ms / count[key]:.3f} | {ms / cycles:.2f} |")

    net: dict[str, list[int]] = {}
    with open(log_path, errors="replace") as f:
        for line in f:
            m = NET_OP.search(line)
            if m:
                net.setdefault(m.group(1), []).append(int(m.group(2)))
    if net:
        print("\n## Network operations (corral's own timing, µs)\n")
        print("| op | n | median | p90 |\n|---|---:|---:|---:|")
        for op, values in sorted(net.items()):
            values.sort()
            print(f"| {op} | {len(values)} | {values[len(values) // 2]} | {values[int(len(values) * 0.9)]} |")


if __name__ == "__main__":
    main()
