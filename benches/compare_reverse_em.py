#!/usr/bin/env python3
"""Reverse-SDE Euler-Maruyama on the 8-Gaussian mixture, exact score: scoresde vs NumPy vs PyTorch eager.

All three run in this one invocation on the same machine, with the same problem:
10,000 samples in 2-D, 1,000 uniform steps from t = 1 to 1e-3 on the VP-SDE
(beta 0.1..20), the exact mixture score at every step, i.i.d. Gaussian noise.
Each implementation is timed as the best of --repeats runs (sampling the prior
included), and the ratios are taken against scoresde's time from the same run.

    bash benches/compare_reverse_em.sh          # sets up .venv-bench, then runs this
    .venv-bench/bin/python benches/compare_reverse_em.py --n 10000 --steps 1000
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np

BETA_MIN, BETA_MAX, EPS = 0.1, 20.0, 1e-3
K, RADIUS, STD = 8, 2.0, 0.1


def coeffs(t):
    """(f, g, a, sigma) of the VP-SDE at time t."""
    beta = BETA_MIN + t * (BETA_MAX - BETA_MIN)
    big_b = BETA_MIN * t + 0.5 * (BETA_MAX - BETA_MIN) * t * t
    return -0.5 * beta, math.sqrt(beta), math.exp(-0.5 * big_b), math.sqrt(-math.expm1(-big_b))


def means():
    ang = 2 * math.pi * np.arange(K) / K
    return RADIUS * np.stack([np.cos(ang), np.sin(ang)], axis=1)


def run_numpy(n, steps, seed, dtype):
    rng = np.random.default_rng(seed)
    mu = means().astype(dtype)
    x = rng.standard_normal((n, 2)).astype(dtype)
    ts = np.linspace(1.0, EPS, steps + 1)
    for i in range(steps):
        t, h = ts[i], ts[i] - ts[i + 1]
        f, g, a, s = coeffs(t)
        var = a * a * STD * STD + s * s
        diff = x[:, None, :] - a * mu[None, :, :]  # (n, K, 2)
        logits = -0.5 * (diff * diff).sum(-1) / var
        logits -= logits.max(axis=1, keepdims=True)
        r = np.exp(logits)
        r /= r.sum(axis=1, keepdims=True)
        score = -(r[:, :, None] * diff).sum(1) / var
        z = rng.standard_normal((n, 2)).astype(dtype)
        x = (1 - f * h) * x + (g * g * h) * score + (g * math.sqrt(h)) * z
    return x


def run_torch(n, steps, seed, dtype):
    import torch

    torch.manual_seed(seed)
    mu = torch.tensor(means(), dtype=dtype)
    x = torch.randn(n, 2, dtype=dtype)
    ts = np.linspace(1.0, EPS, steps + 1)
    with torch.no_grad():
        for i in range(steps):
            t, h = ts[i], ts[i] - ts[i + 1]
            f, g, a, s = coeffs(t)
            var = a * a * STD * STD + s * s
            diff = x[:, None, :] - a * mu[None, :, :]
            r = torch.softmax(-0.5 * (diff * diff).sum(-1) / var, dim=1)
            score = -(r[:, :, None] * diff).sum(1) / var
            z = torch.randn(n, 2, dtype=dtype)
            x = (1 - f * h) * x + (g * g * h) * score + (g * math.sqrt(h)) * z
    return x.numpy()


def best_of(fn, repeats, *args):
    best, out = math.inf, None
    for r in range(repeats):
        start = time.perf_counter()
        out = fn(*args[:2], args[2] + r, *args[3:])
        best = min(best, time.perf_counter() - start)
    return best, out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--steps", type=int, default=1_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-torch", action="store_true")
    args = p.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    cmd = ["cargo", "run", "--quiet", "--release", "--example", "reverse_em_timing", "--",
           "--n", str(args.n), "--steps", str(args.steps), "--repeats", str(args.repeats), "--seed", str(args.seed)]
    out = subprocess.run(cmd, cwd=root, check=True, capture_output=True, text=True).stdout
    ours = {row["dtype"]: row for row in map(json.loads, out.strip().splitlines())}

    rows = []
    for dtype in ("float64", "float32"):
        rows.append(("scoresde", dtype, ours[dtype]["seconds"], ours[dtype]["mean_sq_norm"]))
        secs, x = best_of(run_numpy, args.repeats, args.n, args.steps, args.seed, getattr(np, dtype))
        rows.append(("numpy", dtype, secs, float((x.astype(np.float64) ** 2).sum(1).mean())))
        if not args.skip_torch:
            import torch

            secs, x = best_of(run_torch, args.repeats, args.n, args.steps, args.seed, getattr(torch, dtype))
            rows.append((f"pytorch {torch.__version__} eager ({torch.get_num_threads()} threads)", dtype, secs,
                         float((x.astype(np.float64) ** 2).sum(1).mean())))

    print(f"reverse-SDE Euler-Maruyama, 8-Gaussian mixture (exact score), n = {args.n}, steps = {args.steps}, "
          f"best of {args.repeats}; E|x|^2 of the samples should be ~{RADIUS**2 + 2 * STD**2:.2f} for every row")
    print()
    print("| implementation | dtype | seconds | time / scoresde | E\\|x\\|^2 |")
    print("|---|---|---:|---:|---:|")
    for name, dtype, secs, msq in rows:
        print(f"| {name} | {dtype} | {secs:.3f} | {secs / ours[dtype]['seconds']:.1f}x | {msq:.3f} |")


if __name__ == "__main__":
    sys.exit(main())
