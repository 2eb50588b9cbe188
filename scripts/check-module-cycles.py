#!/usr/bin/env python3
"""Fails when any crate of the workspace has a cycle between its modules.

Each `.rs` file under a crate's `src/` is a module (`src/api.rs` and
`src/api/mod.rs` are `api`, `src/api/tags.rs` is `api::tags`). A reference
from module A to module B (`crate::b::...`, `super::b`, `self::b`, in `use`
lines and in paths in code, comments and strings left out) is an edge
between the two children of their nearest common ancestor that contain them:
`crate::core` named in `api::tags` is an edge api -> core; `super::documents`
named in `api::tags` is an edge api::tags -> api::documents. A module naming
its own ancestor or descendant is not an edge (a parent uses its children,
a child its parent's items). Test modules (`tests.rs`, `#[cfg(test)] mod`)
are left out: a test may reach anywhere. The graph at every level must be
acyclic.

Usage: scripts/check-module-cycles.py [CRATE_DIR ...]   (default: every
workspace member). Prints each cycle found and exits 1, else prints one line
per crate and exits 0.
"""

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def members():
    text = (ROOT / "Cargo.toml").read_text()
    block = re.search(r"members\s*=\s*\[(.*?)\]", text, re.S)
    return [m for m in re.findall(r'"([^"]+)"', block.group(1))] if block else []


def strip_comments_and_strings(code):
    """Code with comments, string and char literals blanked out."""
    out = []
    i, n = 0, len(code)
    while i < n:
        c = code[i]
        if code.startswith("//", i):
            j = code.find("\n", i)
            i = n if j < 0 else j
        elif code.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if code.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif code.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "r" and re.match(r'r#*"', code[i:]) and (i == 0 or not (code[i - 1].isalnum() or code[i - 1] == "_")):
            m = re.match(r'r(#*)"', code[i:])
            end = '"' + m.group(1)
            j = code.find(end, i + len(m.group(0)))
            i = n if j < 0 else j + len(end)
            out.append('""')
        elif c == '"':
            i += 1
            while i < n and code[i] != '"':
                i += 2 if code[i] == "\\" else 1
            i += 1
            out.append('""')
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", code[i:]):
            i += len(re.match(r"'(\\.|[^\\'])'", code[i:]).group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def strip_tests(code):
    """Code without its `#[cfg(test)] mod ... { }` blocks: tests may reach
    anywhere in the crate without making a cycle of its design."""
    out, pos = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(#\[[^\]]*\]\s*)*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{", code):
        if m.start() < pos:
            continue
        out.append(code[pos:m.start()])
        depth, i = 1, m.end()
        while i < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[i], 0)
            i += 1
        pos = i
    out.append(code[pos:])
    return "".join(out)


def module_of(src, path):
    rel = path.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("lib", "main") and len(parts) == 1:
        return ()
    if parts[-1] == "mod":
        parts = parts[:-1]
    return tuple(parts)


def expand(tail):
    """The paths named after `crate::`, `super::` or `self::`: `a::b`, or each
    item of a `{a, b::c, d::{e}}` group (first two levels are enough)."""
    tail = tail.strip()
    if not tail.startswith("{"):
        m = re.match(r"[A-Za-z_][A-Za-z0-9_]*(::[A-Za-z_][A-Za-z0-9_]*)*", tail)
        return [m.group(0).split("::")] if m else []
    depth, items, cur = 0, [], ""
    for ch in tail[1:]:
        if ch == "{":
            depth += 1
        elif ch == "}":
            if depth == 0:
                break
            depth -= 1
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    items.append(cur)
    out = []
    for it in items:
        it = it.strip()
        if not it or it == "self":
            continue
        head = re.match(r"[A-Za-z_][A-Za-z0-9_]*(::[A-Za-z_][A-Za-z0-9_]*)*", it)
        if head:
            out.append(head.group(0).split("::"))
    return out


def resolve(modules, base, names):
    """The deepest known module along `base + names`."""
    path = tuple(base)
    best = path
    for name in names:
        path = path + (name,)
        if path in modules:
            best = path
        else:
            break
    return best


def edges_of(modules, mod, code):
    code = strip_tests(strip_comments_and_strings(code))
    found = set()
    for m in re.finditer(r"\b(crate|super|self)\s*::\s*", code):
        kind = m.group(1)
        # `super::super::x`
        base = list(mod)
        rest = code[m.end():]
        if kind == "super":
            base = base[:-1]
            while True:
                s = re.match(r"super\s*::\s*", rest)
                if not s:
                    break
                base = base[:-1]
                rest = rest[s.end():]
        elif kind == "crate":
            base = []
        for names in expand(rest):
            target = resolve(modules, base, names)
            found.add(target)
    return found


def level_edge(a, b):
    """The sibling pair under the nearest common ancestor, or None."""
    k = 0
    while k < len(a) and k < len(b) and a[k] == b[k]:
        k += 1
    if k == len(a) or k == len(b):
        return None  # one contains the other
    return a[: k + 1], b[: k + 1]


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def check(crate):
    src = ROOT / crate / "src"
    files = [p for p in src.rglob("*.rs")]
    # Test files included with #[path] under a module's folder are part of it.
    modules = {module_of(src, p) for p in files}
    graph, why = {}, {}
    for p in files:
        mod = module_of(src, p)
        if mod == () or mod[-1] == "tests":
            continue
        for target in edges_of(modules, mod, p.read_text()):
            e = level_edge(mod, target)
            if e and e[0] != e[1]:
                graph.setdefault(e[0], set()).add(e[1])
                why.setdefault(e, f"{p.relative_to(ROOT)} names {'::'.join(target) or 'crate'}")
    found = cycles(graph)
    for comp in found:
        names = ", ".join("::".join(c) for c in comp)
        print(f"{crate}: modules in a cycle: {names}")
        for a in comp:
            for b in comp:
                if (a, b) in why and b in graph.get(a, ()):
                    print(f"    {'::'.join(a)} -> {'::'.join(b)}: {why[(a, b)]}")
    return not found, len(modules)


def main():
    crates = sys.argv[1:] or members()
    ok = True
    for c in crates:
        good, n = check(c)
        ok &= good
        if good:
            print(f"{c}: {n} modules, no cycle")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
