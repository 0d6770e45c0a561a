#!/usr/bin/env python3
"""Read critest's JUnit report; check it against the known-failures list.

critest (ginkgo v2) writes one <testcase> per spec, named "[It] <full text>",
where the full text starts with its KubeDescribe group: "[k8s.io] Image
Manager public image with tag ...". Suite-level nodes ("[BeforeSuite]", ...)
are not specs and are ignored unless they fail.

Spec lists (e2e/critest-known-failures.txt, e2e/critest-skipped.txt): one
spec per line, "<spec text> # <reason>"; blank lines and lines starting with
"#" are comments. The spec text is the JUnit name without "[It] ".

Subcommands (used by e2e/critest.sh):
  summary REPORT --known-failures FILE [--failures-out FILE]
      print unexpected failures and fixed known failures; last line
      "N passed, N failed, N skipped"; exit 1 on an unexpected failure.
  skip-regex LIST
      print a regex for -ginkgo.skip matching every spec of LIST.
  compact REPORT OUT
      copy REPORT without captured output and with failure texts cut short:
      what e2e/results/*.junit.xml keep (names, states, messages).
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import re
import sys
import xml.etree.ElementTree as ET

# The KubeDescribe groups of critest v1.37.0 (pkg/validate), longest first so
# "Container OOM" wins over "Container". A spec outside these is "other".
GROUPS = sorted(
    [
        "AppArmor",
        "Container",
        "Container Mount Propagation",
        "Container Mount Readonly",
        "Container OOM",
        "Idempotence",
        "Image Consistency",
        "Image Identifier Consistency",
        "Image Manager",
        "Image Volume [Feature:ImageVolume]",
        "Multiple Containers [Conformance]",
        "NRI",
        "Networking",
        "PodSandbox",
        "Runtime info",
        "SELinux",
        "Security Context",
        "Streaming",
    ],
    key=len,
    reverse=True,
)
DESCRIBE_PREFIX = "[k8s.io] "
# critest's benchmark specs ("[k8s.io] PodSandbox benchmark about ...") are in
# the same binary but never part of a validation run.
SERIAL_SUFFIX = re.compile(r" \[Serial\]$")
BENCHMARK = re.compile(r"^\[k8s\.io\] \w+ benchmark ")


@dataclasses.dataclass(frozen=True)
class SpecResult:
    name: str  # full spec text, e.g. "[k8s.io] Container runtime should ..."
    state: str  # "passed" | "failed" | "skipped"
    message: str = ""

    @property
    def group(self) -> str:
        return group_of(self.name)


def group_of(name: str) -> str:
    text = name.removeprefix(DESCRIBE_PREFIX)
    for group in GROUPS:
        if text == group or text.startswith(group + " "):
            return group
    return "other"


def read_report(path: pathlib.Path) -> list[SpecResult]:
    """Every spec in a ginkgo JUnit report (suite setup nodes only if they failed)."""
    root = ET.parse(path).getroot()
    results = []
    for case in root.iter("testcase"):
        raw = case.get("name", "")
        is_spec = raw.startswith("[It] ")
        name = raw[len("[It] ") :] if is_spec else raw
        if is_spec and BENCHMARK.search(name):
            continue  # benchmark specs run only with critest -benchmark
        failure = case.find("failure")
        error = case.find("error")
        skipped = case.find("skipped")
        if failure is not None or error is not None:
            node = failure if failure is not None else error
            message = (node.get("message") or node.text or "").strip()
            results.append(SpecResult(name, "failed", message))
        elif not is_spec:
            continue
        elif skipped is not None:
            results.append(SpecResult(name, "skipped", (skipped.get("message") or "").strip()))
        else:
            results.append(SpecResult(name, "passed"))
    return results


def read_spec_list(path: pathlib.Path) -> dict[str, str]:
    """spec text -> reason, from a "<spec> # <reason>" list file."""
    specs: dict[str, str] = {}
    if not path.exists():
        return specs
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        spec, sep, reason = line.rpartition(" # ")
        if not sep or not spec.strip() or not reason.strip():
            raise SystemExit(f"{path}:{number}: expected '<spec text> # <reason>', got: {line}")
        specs[spec.strip()] = reason.strip()
    return specs


def totals(results: list[SpecResult]) -> str:
    count = {state: sum(r.state == state for r in results) for state in ("passed", "failed", "skipped")}
    return f"{count['passed']} passed, {count['failed']} failed, {count['skipped']} skipped"


def first_line(message: str) -> str:
    """A one-line gist of a gomega failure: the text before Go's value dumps."""
    words = []
    for line in message.splitlines():
        line = line.strip()
        if line.startswith(("{", "In [", "occurred")) or line.endswith("{"):
            break
        if line.startswith("<") and line.endswith(">:"):
            continue  # "<*status.Error | 0x...>:" carries no value
        if line:
            words.append(line.removeprefix("[FAILED] "))
    return " ".join(words)[:240]


def cmd_summary(args: argparse.Namespace) -> int:
    results = read_report(args.report)
    known = read_spec_list(args.known_failures)
    failed = [r for r in results if r.state == "failed"]
    unexpected = [r for r in failed if r.name not in known]
    fixed = sorted(name for name in known if any(r.name == name and r.state == "passed" for r in results))

    if args.failures_out:
        with open(args.failures_out, "w") as out:
            for r in failed:
                reason = known.get(r.name) or f"TODO: {first_line(r.message)}"
                out.write(f"{r.name} # {reason}\n")
    for r in failed:
        tag = "known failure" if r.name in known else "UNEXPECTED FAILURE"
        print(f"{tag}: {r.name}")
        print(f"    {known.get(r.name) or first_line(r.message)}")
    for name in fixed:
        print(f"now passing, remove from {args.known_failures.name}: {name}")
    if unexpected:
        print(f"{len(unexpected)} failure(s) not listed in {args.known_failures}")
    print(totals(results))
    return 1 if unexpected else 0


def go_regex_quote(text: str) -> str:
    """Like Go's regexp.QuoteMeta (Python's re.escape also escapes spaces, which RE2 rejects)."""
    return re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", text)


def cmd_skip_regex(args: argparse.Namespace) -> int:
    specs = read_spec_list(args.list)
    if specs:
        # ginkgo matches -skip against the spec text; the JUnit name also
        # carries decorators such as " [Serial]", which the text does not.
        texts = sorted(SERIAL_SUFFIX.sub("", spec) for spec in specs)
        print("|".join(go_regex_quote(text) for text in texts))
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    tree = ET.parse(args.report)
    for parent in tree.getroot().iter():
        for child in list(parent):
            if child.tag in ("system-out", "system-err"):
                parent.remove(child)
            elif child.tag in ("failure", "error"):
                child.set("message", (child.get("message") or "")[:2000])
                child.text = None
    tree.write(args.out, encoding="UTF-8", xml_declaration=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    summary = sub.add_parser("summary")
    summary.add_argument("report", type=pathlib.Path)
    summary.add_argument("--known-failures", type=pathlib.Path, required=True)
    summary.add_argument("--failures-out", type=pathlib.Path)
    summary.set_defaults(run=cmd_summary)
    skip = sub.add_parser("skip-regex")
    skip.add_argument("list", type=pathlib.Path)
    skip.set_defaults(run=cmd_skip_regex)
    compact = sub.add_parser("compact")
    compact.add_argument("report", type=pathlib.Path)
    compact.add_argument("out", type=pathlib.Path)
    compact.set_defaults(run=cmd_compact)
    args = parser.parse_args()
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
