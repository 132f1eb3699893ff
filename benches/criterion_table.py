#!/usr/bin/env python3
"""Turns `cargo bench --bench steps` output (stdin) into the README's markdown table."""
import re
import sys

ORDER = ["forward-em", "reverse-em", "reverse-diffusion", "ancestral", "ancestral-large", "pc", "langevin",
         "annealed-langevin"]
SCALE = {"ns": 1e-3, "µs": 1.0, "us": 1.0, "ms": 1e3, "s": 1e6}
res = {}
for m in re.finditer(r"(step/(\d+)/([\w-]+))\s+time:\s+\[\S+ \S+ (\S+) (\S+)", sys.stdin.read()):
    res[(int(m.group(2)), m.group(3))] = float(m.group(4)) * SCALE[m.group(5)]
sizes = sorted({s for s, _ in res})
print("| solver | " + " | ".join(f"{s:,} elements" for s in sizes) + " |")
print("|---|" + "---:|" * len(sizes))
for name in [n for n in ORDER if any(k[1] == n for k in res)]:
    cells = []
    for s in sizes:
        us = res.get((s, name))
        cells.append(f"{us:,.1f} µs ({s / us:.0f} M/s)" if us else "-")
    print(f"| `{name}` | " + " | ".join(cells) + " |")
