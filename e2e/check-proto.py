#!/usr/bin/env python3
"""Checks corral's proto/api.proto against upstream k8s.io/cri-api, wire fact by wire fact.

Both files are compiled with protoc into descriptor sets; every service, method, message,
field (name, number, type, label, type name) and enum value (name, number) must match.
Upstream messages/RPCs that corral lacks are errors; ones corral adds are errors too.

usage: check-proto.py OURS.proto UPSTREAM.proto
"""
import os, re, subprocess, sys, tempfile

def describe(proto):
    """Compiles one .proto to a descriptor set and prints it as protobuf text."""
    with tempfile.TemporaryDirectory() as d:
        # Field options such as debug_redact are not wire facts, and older protoc lacks them.
        src = re.sub(r"\[\s*debug_redact\s*=\s*true\s*\]", "", open(proto).read())
        open(os.path.join(d, "api.proto"), "w").write(src)
        out = os.path.join(d, "set.pb")
        subprocess.run(["protoc", f"-I{d}", f"--descriptor_set_out={out}", "api.proto"], check=True)
        txt = subprocess.run(["protoc", "--decode=google.protobuf.FileDescriptorSet",
                              "google/protobuf/descriptor.proto"],
                             stdin=open(out, "rb"), capture_output=True, check=True).stdout.decode()
    return txt

def facts(txt):
    """Flattens the text descriptor into a set of 'path: fact' strings, dropping options."""
    out, stack, skip = set(), [], 0
    for raw in txt.splitlines():
        line = raw.strip()
        if line.endswith("{"):
            key = line[:-1].strip()
            if skip or key == "options" or key == "source_code_info":
                skip += 1
                continue
            stack.append([key, None])
            continue
        if line == "}":
            if skip:
                skip -= 1
            else:
                stack.pop()
            continue
        if skip or ":" not in line:
            continue
        k, v = [s.strip() for s in line.split(":", 1)]
        if k == "name" and stack and stack[-1][1] is None:
            stack[-1][1] = v  # a block's name labels every fact inside it
            continue
        if k == "json_name":
            continue
        path = "/".join(f"{a}={b}" for a, b in stack if a not in ("file",))
        if path:
            out.add(f"{path} {k}={v}")
    return out

ours, theirs = facts(describe(sys.argv[1])), facts(describe(sys.argv[2]))
missing, extra = sorted(theirs - ours), sorted(ours - theirs)
for f in missing:
    print("missing or different in corral:", f)
for f in extra:
    print("not upstream:", f)
print(f"{len(theirs)} upstream facts, {len(missing)} missing, {len(extra)} extra")
sys.exit(1 if missing or extra else 0)
