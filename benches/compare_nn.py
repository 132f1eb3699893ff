#!/usr/bin/env python3
"""Neural score benchmarks: scoresde vs PyTorch (training) and diffusers (sampling).

Both sides run in this one invocation on the same machine, alternately
(scoresde, Python, scoresde, Python, ...), and each row reports the median of
--repeats runs. The network is the same on both sides: scoresde's default MLP
(`NetConfig::mlp(2)`): input [x, sin(w t), cos(w t)] with 16 frequencies
w_k = 1000 * 10000^(-k/16) (34 inputs), three hidden layers of 128 with SiLU,
a linear output of width 2 predicting eps.

* DSM training steps/s, batch 512, 20,000 eight-Gaussian points on the device:
  t ~ U(1e-5, 1), x_t = a(t) x_0 + sigma(t) eps on the VP-SDE (beta 0.1..20),
  loss mean |eps_hat - eps|^2, Adam (lr 2e-3, linear warm-up over 100 steps),
  global-norm clipping at 1, EMA of the weights (decay 0.999). scoresde:
  `Trainer::step`. PyTorch: nn.Sequential of nn.Linear/nn.SiLU,
  torch.optim.Adam (its default foreach implementation), clip_grad_norm_ and
  torch._foreach_lerp_ for the EMA. 50 untimed steps, then --train-steps timed.
* Sampling: 1,000 ancestral DDPM steps ("fixed small" variance, the default
  of diffusers' DDPMScheduler) from N(0, I), batch 256 and 10,000, weights
  at initialisation, no final denoising. scoresde: `Sampler::run` with
  `by_name("ancestral")` on a tch::Tensor state; diffusers: the usual loop
  `for t in scheduler.timesteps: x = scheduler.step(model(x, t), t, x).prev_sample`
  over DDPMScheduler(num_train_timesteps=1000) (linear betas 1e-4..0.02, the
  VP-SDE discretised at 1,000 steps) under torch.inference_mode().

    bash benches/compare_nn.sh                  # sets up .venv-bench, then runs this
    .venv-bench/bin/python benches/compare_nn.py --repeats 3 --device cpu
"""
import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

import torch
from torch import nn

BETA_MIN, BETA_MAX = 0.1, 20.0
T_MIN = 1e-5
WIDTH, DEPTH, EMB = 128, 3, 32
LR, WARMUP, CLIP, EMA = 2e-3, 100, 1.0, 0.999


class Mlp(nn.Module):
    """scoresde's NetConfig::mlp(2): [x, sin(w t), cos(w t)] -> 3 x (128, SiLU) -> 2."""

    def __init__(self, dim=2):
        super().__init__()
        half = EMB // 2
        self.register_buffer("freqs", 1000.0 * torch.exp(-math.log(10_000.0) / half * torch.arange(half)))
        layers, fan_in = [], dim + EMB
        for _ in range(DEPTH):
            layers += [nn.Linear(fan_in, WIDTH), nn.SiLU()]
            fan_in = WIDTH
        layers.append(nn.Linear(fan_in, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x, t):
        """x: [batch, 2]; t: [batch] continuous times in [0, 1]."""
        arg = t[:, None] * self.freqs[None, :]
        return self.net(torch.cat([x, arg.sin(), arg.cos()], dim=1))


def eight_gaussians(n, device, seed):
    g = torch.Generator().manual_seed(seed)
    k = torch.randint(8, (n,), generator=g)
    ang = 2 * math.pi * k / 8
    centres = 2.0 * torch.stack([ang.cos(), ang.sin()], dim=1)
    return (centres + 0.1 * torch.randn(n, 2, generator=g)).to(device)


def py_train(args, device, seed):
    torch.manual_seed(seed)
    data = eight_gaussians(args.data, device, seed)
    model = Mlp().to(device)
    ema = [p.detach().clone() for p in model.parameters()]
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=LR, betas=(0.9, 0.999), eps=1e-8)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / WARMUP))
    b = args.train_batch

    def step(k):
        idx = torch.randint(data.shape[0], (b,), device=device)
        x0 = data[idx]
        t = T_MIN + (1 - T_MIN) * torch.rand(b, device=device)
        big_b = BETA_MIN * t + 0.5 * (BETA_MAX - BETA_MIN) * t * t
        a = torch.exp(-0.5 * big_b)[:, None]
        sigma = torch.sqrt(-torch.expm1(-big_b))[:, None]
        eps = torch.randn_like(x0)
        loss = (model(a * x0 + sigma * eps, t) - eps).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
        sched.step()
        with torch.no_grad():
            decay = min(EMA, (1 + k) / (10 + k))
            torch._foreach_lerp_(ema, params, 1 - decay)
        return loss

    for k in range(args.train_warmup):
        step(k)
    sync(device)
    start = time.perf_counter()
    for k in range(args.train_warmup, args.train_warmup + args.train_steps):
        loss = step(k)
    last = loss.item()
    secs = time.perf_counter() - start
    return {"seconds": secs, "steps_per_s": args.train_steps / secs, "loss": last}


def py_sample(args, device, batch, seed):
    from diffusers import DDPMScheduler

    torch.manual_seed(seed)
    model = Mlp().to(device).eval()

    def run(steps):
        scheduler = DDPMScheduler(num_train_timesteps=1000)
        scheduler.set_timesteps(steps)
        x = torch.randn(batch, 2, device=device)
        with torch.inference_mode():
            for t in scheduler.timesteps:
                # DDPM's step index t = 0..999 is continuous time (t + 1) / 1000.
                eps = model(x, torch.full((batch,), (int(t) + 1) / 1000, device=device))
                x = scheduler.step(eps, t, x).prev_sample
        return x

    run(10)
    sync(device)
    start = time.perf_counter()
    x = run(args.sample_steps)
    msq = float(x.double().square().sum().item()) / batch
    secs = time.perf_counter() - start
    return {"seconds": secs, "samples_per_s": batch / secs, "mean_sq_norm": msq}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def rust_run(args, root):
    cmd = [os.path.join(root, "target", "release", "examples", "bench_nn"), "--device", args.device,
           "--train-batch", str(args.train_batch), "--train-warmup", str(args.train_warmup),
           "--train-steps", str(args.train_steps), "--data", str(args.data),
           "--sample-batch", ",".join(map(str, args.sample_batch)), "--sample-steps", str(args.sample_steps)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    out = subprocess.run(cmd, cwd=root, check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in out.strip().splitlines()]
    return {("train" if r["measure"] == "train" else f"sample{r['batch']}"): r for r in rows}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (both sides use the same)")
    p.add_argument("--repeats", type=int, default=3, help="alternating runs per side; the median is reported")
    p.add_argument("--quick", action="store_true", help="a smoke run: 1 repeat, 50 training and 100 sampling steps")
    p.add_argument("--threads", type=int, default=0,
                   help="intra-op threads for both sides (0: PyTorch gets os.cpu_count(), scoresde libtorch's default)")
    p.add_argument("--train-batch", type=int, default=512)
    p.add_argument("--train-warmup", type=int, default=50)
    p.add_argument("--train-steps", type=int, default=500)
    p.add_argument("--data", type=int, default=20_000)
    p.add_argument("--sample-batch", type=lambda s: [int(v) for v in s.split(",")], default=[256, 10_000])
    p.add_argument("--sample-steps", type=int, default=1000)
    args = p.parse_args()
    if args.quick:
        args.repeats, args.train_steps, args.sample_steps = 1, 50, 100
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    torch.set_num_threads(args.threads or os.cpu_count())
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run(["cargo", "build", "--quiet", "--release", "--example", "bench_nn"], cwd=root, check=True)

    import diffusers

    keys = ["train"] + [f"sample{b}" for b in args.sample_batch]
    ours = {k: [] for k in keys}
    theirs = {k: [] for k in keys}
    rust_threads = None
    for r in range(args.repeats):
        rust = rust_run(args, root)
        rust_threads = rust["train"]["threads"]
        for k in keys:
            ours[k].append(rust[k])
        theirs["train"].append(py_train(args, device, r))
        for b in args.sample_batch:
            theirs[f"sample{b}"].append(py_sample(args, device, b, r))
        print(f"repeat {r + 1}/{args.repeats}: " + ", ".join(
            f"{k} {ours[k][-1]['seconds']:.3f}s vs {theirs[k][-1]['seconds']:.3f}s" for k in keys), file=sys.stderr)

    def med(rows, field):
        return statistics.median(row[field] for row in rows)

    def spread(rows, field):
        vals = [row[field] for row in rows]
        m = statistics.median(vals)
        return 100 * (max(vals) - min(vals)) / m if m else 0.0

    dev_name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {os.cpu_count()} cores"
    print(f"machine: {platform.machine()}, {dev_name}; PyTorch {torch.__version__} with "
          f"{torch.get_num_threads()} threads, diffusers {diffusers.__version__}; scoresde (libtorch "
          f"{torch.__version__.split('+')[0]} through tch) with {rust_threads} threads; median of {args.repeats} "
          f"alternating runs (spread = (max - min) / median)")
    print()
    print("| measurement | scoresde | PyTorch / diffusers | ratio (higher: scoresde faster) |")
    print("|---|---:|---:|---:|")
    k = "train"
    ours_sps, theirs_sps = med(ours[k], "steps_per_s"), med(theirs[k], "steps_per_s")
    print(f"| DSM training, batch {args.train_batch}, steps/s | {ours_sps:.1f} (±{spread(ours[k], 'steps_per_s'):.0f}%) "
          f"| {theirs_sps:.1f} (±{spread(theirs[k], 'steps_per_s'):.0f}%) | **{ours_sps / theirs_sps:.2f}x** |")
    for b in args.sample_batch:
        k = f"sample{b}"
        o, t = med(ours[k], "seconds"), med(theirs[k], "seconds")
        print(f"| {args.sample_steps} ancestral steps, batch {b:,}, seconds | {o:.3f} (±{spread(ours[k], 'seconds'):.0f}%) "
              f"| {t:.3f} (±{spread(theirs[k], 'seconds'):.0f}%) | **{t / o:.2f}x** |")


if __name__ == "__main__":
    sys.exit(main())
