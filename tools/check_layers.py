#!/usr/bin/env python3
"""check_layers.py - the layer rule of libsiamidx (libsiamidx/LAYERS, docs/layers.md).

  check_layers.py SOURCE_DIR [BUILD_DIR]

Checks, and prints every violation (exit 1 when there is one):
  - every library file lies in a layer folder named in LAYERS, and LAYERS
    itself is acyclic;
  - includes: each `#include "..."` of a library file is parsed and resolved
    (against the file's folder, libsiamidx/ and include/); a file may include
    its own layer and the layers LAYERS lets it use;
  - calls: with BUILD_DIR (a CMake build: the objects of siamidx_objects,
    or of an older tree's siamidx target), every
    undefined symbol of an object that another library object defines is a
    call; the same rule holds for calls;
  - cycles: no two modules (X.c with X.h) depend on each other, through
    includes or calls, however long the loop;
  - the CLI (cli/*.c, *.h) includes only the public headers siamidx.h and
    siamidx_ext.h and its own files, and (with BUILD_DIR) calls no sx_*.
"""
import os
import re
import subprocess
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)


def read_layers(path):
    allowed, order = {}, []
    for line in open(path):
        line = line.split('#', 1)[0].split()
        if not line:
            continue
        allowed[line[0]] = set(line[1:])
        order.append(line[0])
    return allowed, order


def layer_cycles(allowed):
    problems, state = [], {}

    def visit(n, path):
        state[n] = 1
        for m in sorted(allowed.get(n, ())):
            if m not in allowed:
                problems.append(f"LAYERS: {n} uses unknown layer {m}")
            elif state.get(m) == 1:
                problems.append("LAYERS: cycle " + " -> ".join(path + [m]))
            elif not state.get(m):
                visit(m, path + [m])
        state[n] = 2

    for n in allowed:
        if not state.get(n):
            visit(n, [n])
    return problems


def module_of(rel):
    """libsiamidx-relative file -> module (folder/stem)."""
    return os.path.splitext(rel)[0]


def find_cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
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
            strong(v)
    return out


def main():
    src = sys.argv[1]
    build = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else None
    objdir = clidir = None
    if build:
        cm = os.path.join(build, 'CMakeFiles')
        for t in ('siamidx_objects.dir', 'siamidx.dir'):
            if os.path.isdir(os.path.join(cm, t)):
                objdir = os.path.join(cm, t)
                break
        clidir = os.path.join(cm, 'siamidx_cli.dir')
    lib, inc = os.path.join(src, 'libsiamidx'), os.path.join(src, 'include')
    allowed, order = read_layers(os.path.join(lib, 'LAYERS'))
    problems = layer_cycles(allowed)

    files = []
    for root, _, names in os.walk(lib):
        for n in names:
            if n.endswith(('.c', '.h', '.cpp')):
                files.append(os.path.relpath(os.path.join(root, n), lib))
    files.sort()

    def layer(rel):
        parts = rel.split(os.sep)
        return parts[0] if len(parts) == 2 and parts[0] in allowed else None

    def may_use(a, b):
        return a == b or b in allowed[a]

    for f in files:
        if not layer(f):
            problems.append(f"{f}: not in a layer folder of LAYERS ({', '.join(order)})")

    graph = {}  # module -> modules it depends on (includes and calls)
    for f in files:
        la, text = layer(f), open(os.path.join(lib, f), errors='replace').read()
        for name in INCLUDE.findall(text):
            here = os.path.normpath(os.path.join(os.path.dirname(f), name))
            if os.path.exists(os.path.join(lib, here)):
                target = here
            elif os.path.exists(os.path.join(lib, name)):
                target = os.path.normpath(name)
            elif os.path.exists(os.path.join(inc, name)):
                continue  # the public headers sit above every layer's reach: they declare only
            else:
                problems.append(f"{f}: includes \"{name}\", which is no file of the library")
                continue
            lb = layer(target)
            if la and lb and not may_use(la, lb):
                problems.append(f"{f}: includes {target}: layer {la} may not use {lb}")
            elif la and not lb:
                problems.append(f"{f}: includes {target}, which is in no layer")
            if module_of(target) != module_of(f):
                graph.setdefault(module_of(f), set()).add(module_of(target))

    cli_problems = check_cli(src)
    problems += cli_problems
    if objdir:
        problems += check_calls(objdir, lib, layer, may_use, graph)
    if clidir and os.path.isdir(clidir):
        problems += check_cli_calls(clidir)

    for comp in find_cycles(graph):
        problems.append("cycle between modules: " + " <-> ".join(comp))

    for p in problems:
        print("layers: " + p)
    if problems:
        print(f"layers: {len(problems)} violation(s) of libsiamidx/LAYERS")
        return 1
    print(f"layers: ok ({len(files)} files, {len(graph)} modules with dependencies"
          f"{', calls checked' if objdir else ', includes only'})")
    return 0


def objects(root, under):
    out = []
    for r, _, names in os.walk(root):
        for n in names:
            if n.endswith('.o'):
                p = os.path.join(r, n)
                if under in p.replace(os.sep, '/'):
                    out.append(p)
    return sorted(out)


def nm(path, *flags):
    res = subprocess.run(['nm', *flags, path], capture_output=True, text=True, check=True)
    return res.stdout.splitlines()


def source_of(obj, lib):
    """CMakeFiles/siamidx_objects.dir/libsiamidx/nn/model.c.o -> nn/model.c"""
    p = obj.replace(os.sep, '/')
    rel = p.split('/libsiamidx/', 1)[1]
    return rel[:-2] if rel.endswith('.o') else rel


def check_calls(objdir, lib, layer, may_use, graph):
    problems, defined = [], {}
    # Objects of sources that still exist (a build folder keeps stale ones).
    objs = [o for o in objects(objdir, '/libsiamidx/')
            if os.path.exists(os.path.join(lib, source_of(o, lib)))]
    if not objs:
        return [f"no library objects under {objdir}"]
    for o in objs:
        f = source_of(o, lib)
        for line in nm(o, '--defined-only', '-g'):
            parts = line.split()
            if len(parts) == 3:
                defined.setdefault(parts[2], f)
    for o in objs:
        f = source_of(o, lib)
        for line in nm(o, '-u'):
            sym = line.split()[-1]
            g = defined.get(sym)
            if not g or g == f:
                continue
            la, lb = layer(f), layer(g)
            if la and lb and not may_use(la, lb):
                problems.append(f"{f}: calls {sym} of {g}: layer {la} may not use {lb}")
            if module_of(g) != module_of(f):
                graph.setdefault(module_of(f), set()).add(module_of(g))
    return problems


def check_cli(src):
    problems, cli = [], os.path.join(src, 'cli')
    own = set(os.listdir(cli))
    for n in sorted(own):
        if not n.endswith(('.c', '.h')):
            continue
        for name in INCLUDE.findall(open(os.path.join(cli, n), errors='replace').read()):
            if name not in ('siamidx.h', 'siamidx_ext.h') and name not in own:
                problems.append(f"cli/{n}: includes \"{name}\": the CLI uses only siamidx.h and "
                                "siamidx_ext.h")
    return problems


def check_cli_calls(objdir):
    problems = []
    for o in objects(objdir, '/cli/'):
        for line in nm(o, '-u'):
            sym = line.split()[-1]
            if sym.startswith(('sx_', 'SX_')):
                problems.append(f"{os.path.basename(o)}: the CLI calls internal {sym}")
    return problems


if __name__ == '__main__':
    sys.exit(main())
