#!/usr/bin/env python3
"""Copies operations of other AWS services (IAM, CloudTrail) from botocore's
models into ssm/model/tether-operations.json, with the shapes they use, so
that Tether's IAM and audit verbs take exactly AWS's members and answer
AWS's shapes. Shapes whose name SSM's model already uses for something else
are renamed with the service's prefix (IAM's `Tag` becomes `IamTag` when it
differs from SSM's). Tether's own operations in the file are kept.

Usage: scripts/import-model-operations.py BOTOCORE_DATA_DIR
(e.g. ~/.cache/tether-venv/lib/python3.11/site-packages/botocore/data)
Run it again after updating the models; the result is committed.
"""

import gzip
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "ssm/model/tether-operations.json"

IMPORTS = {
    ("iam", "2010-05-08", "Iam"): [
        "CreateUser", "GetUser", "ListUsers", "DeleteUser",
        "TagUser", "UntagUser", "ListUserTags",
        "PutUserPolicy", "GetUserPolicy", "ListUserPolicies", "DeleteUserPolicy",
        "CreateAccessKey", "UpdateAccessKey", "ListAccessKeys", "DeleteAccessKey",
        "GetAccessKeyLastUsed", "SimulatePrincipalPolicy",
    ],
    ("cloudtrail", "2013-11-01", "CloudTrail"): ["LookupEvents"],
}


def load(data, service, version):
    return json.load(gzip.open(data / service / version / "service-2.json.gz"))


def closure(shapes, roots):
    seen, order = set(), []

    def walk(name):
        if name in seen:
            return
        seen.add(name)
        order.append(name)
        s = shapes[name]
        if s["type"] == "structure":
            for m in s.get("members", {}).values():
                walk(m["shape"])
        elif s["type"] == "list":
            walk(s["member"]["shape"])
        elif s["type"] == "map":
            walk(s["key"]["shape"])
            walk(s["value"]["shape"])

    for r in roots:
        walk(r)
    return order


def rename_refs(shape, renames):
    def fix(ref):
        if ref["shape"] in renames:
            ref["shape"] = renames[ref["shape"]]

    if shape["type"] == "structure":
        for m in shape.get("members", {}).values():
            fix(m)
    elif shape["type"] == "list":
        fix(shape["member"])
    elif shape["type"] == "map":
        fix(shape["key"])
        fix(shape["value"])


def main():
    data = pathlib.Path(sys.argv[1])
    ssm = load(data, "ssm", "2014-11-06")
    out = json.loads(OUT.read_text())
    ours = {k: v for k, v in out["operations"].items() if not v.get("imported")}
    ours_shapes = {
        k: v for k, v in out["shapes"].items() if not v.get("imported")
    }
    operations, shapes = dict(ours), dict(ours_shapes)
    for (service, version, prefix), ops in IMPORTS.items():
        model = load(data, service, version)
        roots = []
        for op in ops:
            o = model["operations"][op]
            roots.append(o["input"]["shape"])
            if "output" in o:
                roots.append(o["output"]["shape"])
        names = closure(model["shapes"], roots)
        renames = {}
        for n in names:
            taken = n in ssm["shapes"] or n in ours_shapes
            if taken and ssm["shapes"].get(n, ours_shapes.get(n)) != model["shapes"][n]:
                renames[n] = prefix + n[0].upper() + n[1:]
        for n in names:
            if n in ssm["shapes"] and n not in renames:
                continue  # SSM's own, identical: used as it is
            s = json.loads(json.dumps(model["shapes"][n]))
            rename_refs(s, renames)
            s.pop("documentation", None) if s["type"] != "structure" else None
            s["imported"] = f"{service} {version}"
            shapes[renames.get(n, n)] = s
        for op in ops:
            o = json.loads(json.dumps(model["operations"][op]))
            for io in ("input", "output"):
                if io in o and o[io]["shape"] in renames:
                    o[io]["shape"] = renames[o[io]["shape"]]
            keep = {k: o[k] for k in ("name", "input", "output", "documentation") if k in o}
            keep["imported"] = f"{service} {version}"
            if op in operations and not operations[op].get("imported"):
                raise SystemExit(f"{op}: Tether already defines an operation of that name")
            operations[op] = keep
    out["operations"] = operations
    out["shapes"] = shapes
    OUT.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    print(f"{OUT}: {len(operations)} operations, {len(shapes)} shapes")


if __name__ == "__main__":
    main()
