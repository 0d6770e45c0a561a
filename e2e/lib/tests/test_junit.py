"""Tests of junit.py (critest report reading, known-failures check) and conformance-table.py.

python3 -m unittest discover -s e2e/lib/tests -t e2e/lib
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
import tempfile
import unittest

import junit

LIB = pathlib.Path(__file__).resolve().parents[1]
E2E = LIB.parent

# The shape ginkgo v2 gives critest's report (trimmed).
REPORT = """<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="6" disabled="0" errors="0" failures="1" time="1">
  <testsuite name="CRI validation" tests="6" skipped="2" failures="1">
    <testcase name="[BeforeSuite]" classname="CRI validation" status="passed" time="0"></testcase>
    <testcase name="[It] [k8s.io] Container runtime should support creating container [Conformance]"
              classname="CRI validation" status="passed" time="1"><system-err>E1126 RuntimeConfig from runtime service failed</system-err></testcase>
    <testcase name="[It] [k8s.io] Container OOM runtime should output OOMKilled reason should terminate with exitCode 137 and reason OOMKilled"
              classname="CRI validation" status="failed" time="1">
      <failure message="Expected&#xA;    &lt;string&gt;: &#xA;to equal&#xA;    &lt;string&gt;: OOMKilled" type="failed">[FAILED] details</failure>
    </testcase>
    <testcase name="[It] [k8s.io] Image Manager public image with digest should be pulled and removed [Conformance] [Serial]"
              classname="CRI validation" status="skipped" time="0"><skipped message="skipped"></skipped></testcase>
    <testcase name="[It] [k8s.io] AppArmor runtime should support apparmor field should work with apparmor profile"
              classname="CRI validation" status="skipped" time="0"><skipped message="skipped - AppArmor is disabled on this host"></skipped></testcase>
    <testcase name="[It] [k8s.io] PodSandbox benchmark about operations on PodSandbox benchmark about lifecycle of PodSandbox"
              classname="CRI validation" status="skipped" time="0"><skipped message="skipped"></skipped></testcase>
  </testsuite>
</testsuites>
"""
OOM = "[k8s.io] Container OOM runtime should output OOMKilled reason should terminate with exitCode 137 and reason OOMKilled"


class JunitTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = pathlib.Path(self.tmp.name)
        self.report = self.dir / "junit.xml"
        self.report.write_text(REPORT)

    def tearDown(self):
        self.tmp.cleanup()

    def run_junit(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(LIB / "junit.py"), *args], check=False, capture_output=True, text=True
        )

    def test_read_report_keeps_specs_only_and_drops_benchmarks(self):
        results = {r.name: r for r in junit.read_report(self.report)}
        self.assertEqual(len(results), 4)
        self.assertEqual(results[OOM].state, "failed")
        self.assertEqual(results[OOM].group, "Container OOM")
        self.assertIn("OOMKilled", junit.first_line(results[OOM].message))
        self.assertEqual(junit.totals(list(results.values())), "1 passed, 1 failed, 2 skipped")

    def test_groups_prefer_the_longest_describe(self):
        self.assertEqual(junit.group_of("[k8s.io] Container runtime should x"), "Container")
        self.assertEqual(junit.group_of("[k8s.io] Container Mount Readonly runtime x"), "Container Mount Readonly")
        self.assertEqual(
            junit.group_of("[k8s.io] Multiple Containers [Conformance] when x"), "Multiple Containers [Conformance]"
        )
        self.assertEqual(junit.group_of("something else"), "other")

    def test_unlisted_failure_fails_and_last_line_has_totals(self):
        known = self.dir / "known.txt"
        known.write_text("# header\n")
        out = self.run_junit("summary", str(self.report), "--known-failures", str(known))
        self.assertEqual(out.returncode, 1)
        self.assertIn(f"UNEXPECTED FAILURE: {OOM}", out.stdout)
        self.assertEqual(out.stdout.splitlines()[-1], "1 passed, 1 failed, 2 skipped")

    def test_listed_failure_passes_and_fixed_specs_are_reported(self):
        known = self.dir / "known.txt"
        creating = "[k8s.io] Container runtime should support creating container [Conformance]"
        known.write_text(f"{OOM} # cgroup v1 host\n{creating} # was broken\n")
        failures = self.dir / "failures.txt"
        out = self.run_junit(
            "summary", str(self.report), "--known-failures", str(known), "--failures-out", str(failures)
        )
        self.assertEqual(out.returncode, 0, out.stdout)
        self.assertIn(f"now passing, remove from known.txt: {creating}", out.stdout)
        self.assertEqual(failures.read_text(), f"{OOM} # cgroup v1 host\n")

    def test_malformed_list_line_is_a_clear_error(self):
        bad = self.dir / "bad.txt"
        bad.write_text("a spec without a reason\n")
        out = self.run_junit("summary", str(self.report), "--known-failures", str(bad))
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("bad.txt:1: expected '<spec text> # <reason>'", out.stderr)

    def test_skip_regex_matches_the_spec_text_without_decorators(self):
        listed = self.dir / "skip.txt"
        spec = "[k8s.io] Image Manager public image with digest should be pulled and removed [Conformance] [Serial]"
        listed.write_text(f"{spec} # pinned digest\n")
        regex = self.run_junit("skip-regex", str(listed)).stdout.strip()
        self.assertNotIn(" [Serial]", regex.replace("\\", ""))
        # ginkgo matches against the text, which has no " [Serial]" decorator.
        self.assertRegex(spec.removesuffix(" [Serial]"), regex)
        self.assertIsNone(re.search(regex, "[k8s.io] Image Manager public image with tag should be pulled"))

    def test_compact_keeps_results_and_drops_captured_output(self):
        out = self.dir / "compact.xml"
        self.assertEqual(self.run_junit("compact", str(self.report), str(out)).returncode, 0)
        self.assertEqual(junit.read_report(out), junit.read_report(self.report))
        self.assertNotIn("RuntimeConfig from runtime service failed", out.read_text())
        self.assertNotIn("[FAILED] details", out.read_text())


class ConformanceTableTest(unittest.TestCase):
    def test_table_marks_a_missing_report_as_not_run(self):
        with tempfile.TemporaryDirectory() as tmp:
            report = pathlib.Path(tmp) / "containerd.xml"
            report.write_text(REPORT)
            doc = pathlib.Path(tmp) / "CONFORMANCE.md"
            doc.write_text(
                "intro\n<!-- BEGIN GENERATED by e2e/conformance-table.py: do not edit by hand -->\nold\n<!-- END GENERATED -->\noutro\n"
            )
            known = pathlib.Path(tmp) / "known.txt"
            known.write_text(f"{OOM} # no OOM on this host\n")
            subprocess.run(
                [
                    sys.executable,
                    str(E2E / "conformance-table.py"),
                    "--corral",
                    str(pathlib.Path(tmp) / "missing.xml"),
                    "--containerd",
                    str(report),
                    "--containerd-known-failures",
                    str(known),
                    "--update",
                    str(doc),
                ],
                check=True,
            )
            text = doc.read_text()
            self.assertTrue(text.startswith("intro\n") and text.endswith("outro\n"))
            self.assertNotIn("old", text)
            self.assertIn("| Container OOM | 1 | not run yet | 0 |", text)
            self.assertIn("| **all** | **4** | **not run yet** | **1** |", text)
            self.assertIn("containerd fails *runtime should output OOMKilled reason", text)
            self.assertIn("no OOM on this host", text)


if __name__ == "__main__":
    unittest.main()
