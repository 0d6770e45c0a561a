#!/usr/bin/env python3
"""Where corral's time goes, step by step: tabulates the span timings of a corral log.

corral logs a `close time.busy=… time.idle=…` line whenever a span ends when it runs with
`--log-span-timings` (and `--log-level info,corral=debug,corral_runtime=debug` for the step
spans inside each RPC). The monitor's own steps, which run in another process, arrive as a
`monitor phases setup_us=… cgroup_join_us=… init_us=…` event of StartContainer.

    python3 e2e/bench_spans.py corral.log > spans.md

Prints, per RPC, the median wall time (busy + idle) of the RPC and of each step inside it,
and the step's share of the RPC's median. Used by `e2e/bench.sh --profile`.
"""

import re
import statistics
import sys
from collections import defaultdict

CLOSE = re.compile(r'cri\{rpc="(?P<rpc>\w+)"[^}]*\}:(?:(?P<step>[\w:]+): )?\s*close time\.busy=(?P<busy>\S+) time\.idle=(?P<idle>\S+)')
PHASES = re.compile(r'cri\{rpc="(?P<rpc>\w+)"[^}]*\}: monitor phases (?P<fields>.*)$')
UNITS = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1000.0}
RPCS = ["RunPodSandbox", "CreateContainer", "StartContainer", "ExecSync", "StopContainer",
        "RemoveContainer", "StopPodSandbox", "RemovePodSandbox"]


def millis(text):
    """`12.3ms` / `840µs` / `1.2s` as milliseconds."""
    m = re.fullmatch(r"([\d.]+)([a-zµ]+)", text)
    if not m or m.group(2) not in UNITS:
        raise ValueError(f"unknown duration {text!r}")
    return float(m.group(1)) * UNITS[m.group(2)]


def collect(lines):
    """{rpc: {step or None: [ms, ...]}} from the log lines."""
    samples = defaultdict(lambda: defaultdict(list))
    for line in lines:
        if m := CLOSE.search(line):
            total = millis(m["busy"]) + millis(m["idle"])
            samples[m["rpc"]][m["step"]].append(total)
        elif m := PHASES.search(line):
            for key, value in re.findall(r"(\w+)_us=(\d+)", m["fields"]):
                samples[m["rpc"]][f"monitor: {key}"].append(int(value) / 1000)
    return samples


def table(samples):
    out = ["| RPC / step | n | median ms | share of the RPC |", "|---|---:|---:|---:|"]
    for rpc in RPCS + sorted(set(samples) - set(RPCS)):
        steps = samples.get(rpc)
        if not steps or None not in steps:
            continue
        whole = statistics.median(steps[None])
        out.append(f"| **{rpc}** | {len(steps[None])} | {whole:.2f} | |")
        for step, values in steps.items():
            if step is None:
                continue
            median = statistics.median(values)
            share = f"{100 * median / whole:.0f} %" if whole > 0 else ""
            out.append(f"| &nbsp;&nbsp;{step} | {len(values)} | {median:.2f} | {share} |")
    return "\n".join(out)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    with open(sys.argv[1], encoding="utf-8", errors="replace") as f:
        samples = collect(f)
    if not samples:
        sys.exit(f"{sys.argv[1]}: no span timings (was corral run with --log-span-timings?)")
    print("## Where the time goes: span timings (median wall time per step)\n")
    print("From corral's own `tracing` spans (`--log-span-timings`), without strace. Steps run one")
    print("after the other inside their RPC; the monitor's steps are part of `monitor_report`.\n")
    print(table(samples))


if __name__ == "__main__":
    main()
