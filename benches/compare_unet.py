#!/usr/bin/env python3
"""U-Net benchmarks: scoresde vs the same U-Net in PyTorch, and vs diffusers' UNet2DModel.

Run through `bash benches/compare_unet.sh` (it builds the release binaries and provides
PyTorch, NumPy and diffusers); every PyTorch run uses torch.set_num_threads(--threads) and
every scoresde run `--threads` the same number (default 1).

(a) train: DSM training steps/s at batch 64 on 1x8x8 and 1x28x28 images, scoresde's default
    U-Net (`UnetConfig::small`: base 16, multipliers 1,2,2, one residual block per level, no
    attention, 8 GroupNorm groups, 32-wide sinusoidal time embedding). scoresde:
    `examples/bench_unet.rs` (`Trainer::step`). PyTorch: python/scoresde_unet.py, the same
    network layer for layer (the parameter counts are asserted equal), trained by the same
    step: t ~ U(1e-5, 1) on the VP-SDE (beta 0.1..20), loss mean |eps_hat - eps|^2,
    torch.optim.Adam (lr 2e-3, linear warm-up over 100 steps), clip_grad_norm_ at 1, an EMA
    (decay min(0.999, (1 + k) / (10 + k))). Rounds alternate the two sides; the median of the
    rounds is reported.
(b) sample: --sample-steps ancestral DDPM steps (default 100) for a batch of 64 from N(0, I),
    untrained weights (scoresde: a one-step checkpoint). scoresde: `scoresde sample --solver ancestral --no-denoise`
    on a one-step checkpoint of the default U-Net (its own "samples/s", which leaves out
    start-up and the file write). diffusers: the usual loop
    `x = scheduler.step(model(x, t).sample, t, x).prev_sample` over UNet2DModel (block
    channels 16,32,32, one layer per block, no attention, 8 groups: ours in channels and
    blocks; both parameter counts are printed) and DDPMScheduler(num_train_timesteps=1000) with
    set_timesteps(--sample-steps), under torch.inference_mode().
(c) quality: the same U-Net trained for --quality-steps on `--data digits` (8x8, pixel values
    0..16, scaled to [-1, 1]) by scoresde (`scoresde train --net unet`) and by PyTorch (the
    step of (a), on exactly the training rows scoresde used: the data less its heldout.npy).
    PyTorch's EMA weights are written as a scoresde checkpoint (the names are scoresde's), so
    both are sampled by the same `scoresde sample` (ancestral, --quality-sample-steps, the
    same seed) and both sample files are scored by one `scoresde eval --features`, whose
    table gives the classifier FID and its real-vs-real floor.

    bash benches/compare_unet.sh                       # all three, the default sizes
    bash benches/compare_unet.sh --only quality --quality-steps 10000
    bash benches/compare_unet.sh --quick               # a smoke run of everything
"""
import argparse
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
from scoresde_unet import UNet, num_params  # noqa: E402

BETA_MIN, BETA_MAX, T_MIN = 0.1, 20.0, 1e-5
LR, WARMUP, CLIP, EMA = 2e-3, 100, 1.0, 0.999
IMAGE_COLUMNS = 14  # columns of `scoresde eval`'s image table (src/bin/scoresde/features.rs)
SHAPES = {"8x8": (1, 8, 8), "28x28": (1, 28, 28)}
BIN = os.path.join(ROOT, "target", "release", "scoresde")


def vp(t):
    """a(t), sigma(t) of the VP-SDE with linear beta."""
    big_b = BETA_MIN * t + 0.5 * (BETA_MAX - BETA_MIN) * t * t
    return torch.exp(-0.5 * big_b), torch.sqrt(-torch.expm1(-big_b))


class DsmTrainer:
    """The DSM step of scoresde's `Trainer::step` (src/train.rs) for a PyTorch model."""

    def __init__(self, model, data, batch):
        self.model, self.data, self.batch = model, data, batch
        self.params = list(model.parameters())
        self.ema = [p.detach().clone() for p in self.params]
        self.opt = torch.optim.Adam(self.params, lr=LR, betas=(0.9, 0.999), eps=1e-8)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda k: min(1.0, (k + 1) / WARMUP))
        self.k = 0

    def step(self):
        b, shape = self.batch, self.data.shape[1:]
        x0 = self.data[torch.randint(self.data.shape[0], (b,))]
        t = T_MIN + (1 - T_MIN) * torch.rand(b)
        a, sigma = vp(t)
        eps = torch.randn_like(x0)
        xt = a.view(-1, *[1] * len(shape)) * x0 + sigma.view(-1, *[1] * len(shape)) * eps
        loss = (self.model(xt, t) - eps).square().mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.params, CLIP)
        self.opt.step()
        self.sched.step()
        with torch.no_grad():
            decay = min(EMA, (1 + self.k) / (10 + self.k))
            torch._foreach_lerp_(self.ema, self.params, 1 - decay)
        self.k += 1
        return loss


def run(cmd, **kw):
    return subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True, **kw)


def scoresde(args, *rest):
    return run([BIN, "--threads", str(args.threads), *rest])


# ---------------------------------------------------------------- (a) training speed


def rust_train(args, shape, steps):
    cmd = [os.path.join(ROOT, "target", "release", "examples", "bench_unet"), "--threads", str(args.threads),
           "--shape", ",".join(map(str, shape)), "--batch", str(args.batch), "--warmup", str(args.warmup),
           "--steps", str(steps)]
    return json.loads(run(cmd).stdout.strip().splitlines()[-1])


def py_train(args, shape, steps, seed):
    torch.manual_seed(seed)
    model = UNet(*shape)
    n = shape[0] * shape[1] * shape[2]
    # The data of examples/bench_unet.rs: ((i * 7919 + j * 104729) mod 1000) / 500 - 1.
    i, j = torch.meshgrid(torch.arange(1000), torch.arange(n), indexing="ij")
    data = (((i * 7919 + j * 104_729) % 1000).float() / 500.0 - 1.0).view(1000, *shape)
    tr = DsmTrainer(model, data, args.batch)
    for _ in range(args.warmup):
        tr.step()
    start = time.perf_counter()
    for _ in range(steps):
        loss = tr.step()
    loss.item()
    return {"params": num_params(model), "steps_per_s": steps / (time.perf_counter() - start)}


def bench_train(args):
    rows = []
    for name, shape in SHAPES.items():
        steps = args.train_steps if shape[1] <= 8 else max(1, args.train_steps // 4)
        ours, theirs = [], []
        for r in range(args.repeats):
            ours.append(rust_train(args, shape, steps))
            theirs.append(py_train(args, shape, steps, r))
            print(f"train {name} round {r + 1}/{args.repeats}: scoresde {ours[-1]['steps_per_s']:.2f} steps/s, "
                  f"PyTorch {theirs[-1]['steps_per_s']:.2f} steps/s", file=sys.stderr)
        p_ours, p_theirs = ours[0]["params"], theirs[0]["params"]
        print(f"train {name}: parameters scoresde {p_ours:,}, PyTorch {p_theirs:,}", file=sys.stderr)
        assert p_ours == p_theirs, f"parameter counts differ: scoresde {p_ours}, PyTorch {p_theirs}"
        o = statistics.median(x["steps_per_s"] for x in ours)
        t = statistics.median(x["steps_per_s"] for x in theirs)
        rows.append((f"DSM training {name}, batch {args.batch}, {steps} steps, steps/s ({p_ours:,} parameters each)",
                     o, spread(ours, "steps_per_s"), t, spread(theirs, "steps_per_s"), o / t))
    return rows


# ---------------------------------------------------------------- (b) sampling speed


def diffusers_unet(shape):
    from diffusers import UNet2DModel

    return UNet2DModel(sample_size=shape[1], in_channels=shape[0], out_channels=shape[0],
                       block_out_channels=(16, 32, 32), layers_per_block=1,
                       down_block_types=("DownBlock2D",) * 3, up_block_types=("UpBlock2D",) * 3,
                       add_attention=False, norm_num_groups=8).eval()


def py_sample(args, shape, seed):
    from diffusers import DDPMScheduler

    torch.manual_seed(seed)
    model = diffusers_unet(shape)
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    scheduler.set_timesteps(args.sample_steps)
    start = time.perf_counter()
    x = torch.randn(args.batch, *shape)
    with torch.inference_mode():
        for t in scheduler.timesteps:
            x = scheduler.step(model(x, t).sample, t, x).prev_sample
    x.sum().item()
    secs = time.perf_counter() - start
    return {"params": num_params(model), "samples_per_s": args.batch / secs}


def rust_sample(args, model_dir, out_dir, seed):
    err = scoresde(args, "sample", "--model", model_dir, "--solver", "ancestral", "--steps", str(args.sample_steps),
                   "-n", str(args.batch), "--batch", str(args.batch), "--no-denoise", "--device", "cpu",
                   "--seed", str(seed), "--out", out_dir, "--force").stderr
    m = re.search(r"([0-9.]+) s \(([0-9.]+) samples/s", err)
    if not m:
        raise RuntimeError(f"no timing line in scoresde sample's output:\n{err}")
    return {"samples_per_s": args.batch / float(m.group(1))}


def bench_sample(args):
    rows = []
    try:
        import diffusers  # noqa: F401
    except ImportError:
        print("sample: diffusers is not installed (compare_unet.sh installs it): the sampling rows are skipped",
              file=sys.stderr)
        return rows
    for name, shape in SHAPES.items():
        model_dir = os.path.join(args.out, f"init-{name}")
        data = "digits" if shape[1] == 8 else "mnist"
        # A one-step run: the default U-Net's checkpoint (weights barely moved from initialisation).
        scoresde(args, "train", "--net", "unet", "--data", data, "--steps", "1", "--batch", str(args.batch),
                 "--device", "cpu", "--out", model_dir, "--force")
        ours, theirs = [], []
        for r in range(args.repeats):
            ours.append(rust_sample(args, model_dir, os.path.join(args.out, f"samples-{name}"), r))
            theirs.append(py_sample(args, shape, r))
            print(f"sample {name} round {r + 1}/{args.repeats}: scoresde {ours[-1]['samples_per_s']:.2f} samples/s, "
                  f"diffusers {theirs[-1]['samples_per_s']:.2f} samples/s", file=sys.stderr)
        p_ours = num_params(UNet(*shape))
        p_theirs = theirs[0]["params"]
        o = statistics.median(x["samples_per_s"] for x in ours)
        t = statistics.median(x["samples_per_s"] for x in theirs)
        rows.append((f"{args.sample_steps} ancestral steps {name}, batch {args.batch}, samples/s "
                     f"(scoresde U-Net {p_ours:,} parameters, diffusers UNet2DModel {p_theirs:,})",
                     o, spread(ours, "samples_per_s"), t, spread(theirs, "samples_per_s"), o / t))
    return rows


# ---------------------------------------------------------------- (c) quality


def training_rows(heldout_path):
    """The digits scoresde trained on, in pixel units: every row of the set less one copy of each
    held-out row (a multiset difference, so repeated digits are handled as scoresde's split did)."""
    import gzip

    with gzip.open(os.path.join(os.environ.get("SCORESDE_DATA", os.path.join(ROOT, ".data")), "digits.csv.gz"), "rt") as f:
        full = np.loadtxt(f, delimiter=",")
    pixels = full[:, :64]
    held = np.load(heldout_path)
    assert held.shape[1] == 64, held.shape
    left = {}
    for row in map(tuple, held):
        left[row] = left.get(row, 0) + 1
    keep = []
    for row in pixels:
        key = tuple(row)
        if left.get(key, 0) > 0:
            left[key] -= 1
        else:
            keep.append(row)
    assert not any(left.values()), "a held-out row is not in the data set"
    return np.array(keep)


def write_checkpoint(model, ema, template_dir, out_dir, steps, losses):
    """`ema` and `model`'s weights as a scoresde checkpoint, its settings those of the scoresde run
    in `template_dir` (the same network, SDE, training settings and data scaling)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    meta = json.load(open(os.path.join(template_dir, "model.json")))
    meta["step"], meta["losses"] = steps, losses
    with safe_open(os.path.join(template_dir, "model.safetensors"), "pt") as f:
        freqs = f.get_tensor("embedding.freqs")
        names = {k[len("ema."):] for k in f.keys() if k.startswith("ema.")}
    state = dict(model.state_dict())
    state.pop("freqs")
    assert set(state) == names, f"names differ: {sorted(set(state) ^ names)}"
    n = sum(v.numel() for v in state.values())
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in state.items()}
    for (k, _), e in zip(model.named_parameters(), ema):
        tensors[f"ema.{k}"] = e.detach().contiguous()
    tensors["adam.m"] = torch.zeros(n)
    tensors["adam.v"] = torch.zeros(n)
    tensors["embedding.freqs"] = freqs
    os.makedirs(out_dir, exist_ok=True)
    text = json.dumps(meta, indent=2)
    save_file(tensors, os.path.join(out_dir, "model.safetensors"), metadata={"scoresde": text})
    open(os.path.join(out_dir, "model.json"), "w").write(text)


def bench_quality(args):
    out = os.path.join(args.out, "quality")
    # The feature classifier is trained once per --feature-steps and reused by later runs.
    feat = os.path.join(out, f"features-{args.feature_steps}")
    ours_dir, theirs_dir = (os.path.join(out, d) for d in ("scoresde", "pytorch"))
    times = {}
    if not os.path.exists(os.path.join(feat, "features.safetensors")):
        start = time.perf_counter()
        scoresde(args, "train-features", "--data", "digits", "--device", "cpu", "--out", feat, "--force",
                 "--steps", str(args.feature_steps))
        times["features"] = time.perf_counter() - start
    common = ["--steps", str(args.quality_steps), "--batch", str(args.quality_batch), "--device", "cpu", "--seed", "0"]
    start = time.perf_counter()
    scoresde(args, "train", "--net", "unet", "--data", "digits", *common, "--out", ours_dir, "--force")
    times["scoresde"] = time.perf_counter() - start

    torch.manual_seed(0)
    rows = training_rows(os.path.join(ours_dir, "heldout.npy"))
    data = torch.tensor(rows / 8.0 - 1.0, dtype=torch.float32).view(-1, 1, 8, 8)
    model = UNet(1, 8, 8)
    # The mirror check: scoresde's checkpoint loads into this module under the same names and shapes.
    from safetensors.torch import load_file

    ck = load_file(os.path.join(ours_dir, "model.safetensors"))
    model.load_state_dict({k[4:]: v for k, v in ck.items() if k.startswith("ema.")} | {"freqs": model.freqs},
                          strict=True)
    torch.manual_seed(0)
    model = UNet(1, 8, 8)
    tr = DsmTrainer(model, data, args.quality_batch)
    start = time.perf_counter()
    losses, acc, count = [], 0.0, 0
    for k in range(args.quality_steps):
        acc, count = acc + tr.step().item(), count + 1
        if (k + 1) % 100 == 0 or k + 1 == args.quality_steps:
            losses.append([k + 1, acc / count])
            acc, count = 0.0, 0
    times["pytorch"] = time.perf_counter() - start
    write_checkpoint(model, tr.ema, ours_dir, theirs_dir, args.quality_steps, losses)

    files = []
    for d in (ours_dir, theirs_dir):
        scoresde(args, "sample", "--model", d, "--solver", "ancestral", "--steps", str(args.quality_sample_steps),
                 "-n", str(args.quality_samples), "--seed", "0", "--device", "cpu", "--force")
        files.append(max((os.path.join(d, f) for f in os.listdir(d) if f.startswith("samples-") and f.endswith(".npy")),
                         key=os.path.getmtime))
    res = scoresde(args, "eval", "--model", ours_dir, "--samples", files[0], "--samples", files[1],
                   "--features", feat, "--force")
    return times, files, res.stdout + res.stderr


def spread(rows, field):
    vals = [r[field] for r in rows]
    m = statistics.median(vals)
    return 100 * (max(vals) - min(vals)) / m if m else 0.0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=["train", "sample", "quality"], action="append",
                   help="run only these parts (repeatable; default all three)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads on each side")
    p.add_argument("--repeats", type=int, default=3, help="alternating rounds per measurement; the median is reported")
    p.add_argument("--batch", type=int, default=64, help="batch of (a) and (b)")
    p.add_argument("--warmup", type=int, default=3, help="untimed training steps of (a)")
    p.add_argument("--train-steps", type=int, default=20, help="timed training steps of (a) at 8x8 (28x28: a quarter)")
    p.add_argument("--sample-steps", type=int, default=100)
    p.add_argument("--quality-steps", type=int, default=2000)
    p.add_argument("--quality-batch", type=int, default=64)
    p.add_argument("--quality-samples", type=int, default=500)
    p.add_argument("--quality-sample-steps", type=int, default=100)
    p.add_argument("--feature-steps", type=int, default=2000, help="steps of `scoresde train-features`")
    p.add_argument("--out", default=os.path.join(ROOT, "out", "compare-unet"))
    p.add_argument("--quick", action="store_true", help="a smoke run: 1 round, few steps, a 200-step quality run")
    args = p.parse_args()
    if args.quick:
        args.repeats, args.train_steps, args.sample_steps = 1, 4, 10
        args.quality_steps, args.quality_samples, args.feature_steps = 200, 300, 300
    parts = args.only or ["train", "sample", "quality"]
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)

    rows = []
    if "train" in parts:
        rows += bench_train(args)
    if "sample" in parts:
        rows += bench_sample(args)
    try:
        import diffusers
        dv = f", diffusers {diffusers.__version__}"
    except ImportError:
        dv = ""
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; PyTorch {torch.__version__} with "
          f"{torch.get_num_threads()} threads{dv}; scoresde with --threads {args.threads}; median of "
          f"{args.repeats} alternating rounds (spread = (max - min) / median)")
    if rows:
        print()
        print("| measurement | scoresde | PyTorch / diffusers | ratio (higher: scoresde faster) |")
        print("|---|---:|---:|---:|")
        for name, o, so, t, st, ratio in rows:
            print(f"| {name} | {o:.2f} (±{so:.0f}%) | {t:.2f} (±{st:.0f}%) | **{ratio:.2f}x** |")
    if "quality" in parts:
        times, files, table = bench_quality(args)
        print()
        print(f"quality: {args.quality_steps} steps at batch {args.quality_batch} on digits; "
              + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))
        print(f"samples: {files[0]} (scoresde), {files[1]} (PyTorch), {args.quality_samples} each, "
              f"{args.quality_sample_steps} ancestral steps")
        print(table)
        fids = []
        for f in files:
            cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in table.splitlines()
                     if line.startswith("|") and f in line]
            cells = [c for c in cells if len(c) >= IMAGE_COLUMNS]
            fids.append((cells[-1][2], cells[-1][3]) if cells else ("?", "?"))
        print(f"| classifier FID after {args.quality_steps} steps (real-vs-real floor) | {fids[0][0]} ({fids[0][1]}) "
              f"| {fids[1][0]} ({fids[1][1]}) | |")


if __name__ == "__main__":
    sys.exit(main())
