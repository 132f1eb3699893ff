"""Denoising score matching with PyTorch DistributedDataParallel: scoresde's trainer (src/train.rs)
on torchrun's processes, writing scoresde checkpoints that `scoresde sample --model DIR` reads.

    torchrun --nproc_per_node=K python/scoresde/train_ddp.py --data x.npy --out runs/ddp --steps 4000
    python python/scoresde/train_ddp.py ...      # one process, no torchrun needed

The step is scoresde's: a global batch of --batch-size rows drawn with replacement, times
t ~ U(t_min, 1), noise eps ~ N(0, I), x_t = a(t) x_0 + sigma(t) eps on the VP-SDE, loss
mean_i w(t_i) mean_d (eps - eps_hat)^2 (w = 1, or g^2/sigma^2 with --weighting likelihood),
cross-entropy for a classifier; label dropout to the null label for a conditional score;
Adam (beta 0.9, 0.999, eps 1e-8, bias-corrected) at lr * min(1, (k + 1) / warmup); global
gradient-norm clipping (factor min(1, clip / (|g| + 1e-6))); EMA decay min(ema_decay,
(1 + k) / (10 + k)). Every draw of step k comes from a generator seeded by (seed, k) and is made
for the whole global batch on every rank; rank r takes rows [r B/W, (r + 1) B/W) (the per-rank
split of each global batch that a DistributedSampler would give an epoch). DDP averages the
ranks' gradients, so K processes compute the same step as one (up to float rounding) and a run
resumed from a checkpoint continues the uninterrupted one. The draws are PyTorch's, not
scoresde's ChaCha streams: the same law, other numbers.

Checkpoints (weights, EMA, Adam moments, step, loss log) are written by rank 0 only, atomically,
every --save-every steps and at the end; --resume continues from --out's checkpoint (also one
written by `scoresde train`). Backend: NCCL when CUDA is available, gloo otherwise.

Test hook: SCORESDE_DDP_KILL_AT=STEP:RANK makes that rank SIGKILL itself before step STEP
(tests/python_parity.rs checks that the last checkpoint survives and resumes).
"""
import argparse
import hashlib
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
from torch.nn import functional as F

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from scoresde import ckpt, nets  # noqa: E402
else:
    from . import ckpt, nets

TRAIN_DEFAULTS = dict(steps=4000, batch_size=512, lr=2e-3, warmup=100, grad_clip=1.0, ema_decay=0.999,
                      weighting="eps", t_min=1e-5, seed=0, label_dropout=0.1)
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8


class UsageError(Exception):
    """Bad input, reported as one line and exit code 2."""


# ---- the VP-SDE (solvers/src/sde.rs), in f64 on the host ------------------------------------
def vp_coefs(sde, t):
    """(a(t), sigma(t), g(t)^2) of scoresde's VP-SDE for f64 times `t`."""
    if sde.get("kind") != "vp":
        raise UsageError(f"SDE kind {sde.get('kind')!r}: this trainer knows the VP-SDE only")
    bmin, bmax = sde["beta_min"], sde["beta_max"]
    b_int = bmin * t + 0.5 * (bmax - bmin) * t * t
    a = torch.exp(-0.5 * b_int)
    sigma = torch.sqrt(torch.clamp(-torch.expm1(-b_int), min=0.0))
    g2 = torch.clamp(bmin + t * (bmax - bmin), min=0.0)
    return a, sigma, g2


# ---- data -------------------------------------------------------------------------------------
def load_data(path, labels_path=None):
    """Rows (f64 [n, d]) of a .npy file and their labels (int64 [n] or None), checked."""
    if not path.endswith(".npy"):
        raise UsageError(f"--data {path}: expected a .npy file of rows (scoresde's toy sets: "
                         "`scoresde train --data NAME --save-train FILE.npy`)")
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise UsageError(f"--data {path}: {e}") from None
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0 or not np.issubdtype(x.dtype, np.number):
        raise UsageError(f"--data {path}: need a non-empty 2-D numeric array, got shape {x.shape} ({x.dtype})")
    x = x.astype(np.float64)
    bad = np.argwhere(~np.isfinite(x))
    if len(bad):
        raise UsageError(f"--data {path}: non-finite value at row {bad[0][0]}, column {bad[0][1]}")
    y = None
    if labels_path:
        try:
            y = np.load(labels_path, allow_pickle=False).reshape(-1)
        except (OSError, ValueError) as e:
            raise UsageError(f"--labels {labels_path}: {e}") from None
        integral = np.issubdtype(y.dtype, np.integer) or (
            np.issubdtype(y.dtype, np.floating) and np.isfinite(y).all() and (y == np.round(y)).all())
        if len(y) != len(x) or not integral or (y < 0).any():
            raise UsageError(f"--labels {labels_path}: need {len(x)} non-negative integer labels "
                             f"(integers or integral floats), got {len(y)} of {y.dtype}")
        y = y.astype(np.int64)
    return x, y


def fit_scaling(x):
    """scoresde's `Scaling::fit`: per-column mean and population std (1 for a constant column)."""
    mean = x.mean(axis=0)
    std = np.sqrt(((x - mean) ** 2).mean(axis=0))
    scale = np.maximum(np.abs(x).max(axis=0), 1.0)
    std = np.where(std > 1e-12 * scale, std, 1.0)
    return mean, std


# ---- the step ---------------------------------------------------------------------------------
def step_seed(seed, step):
    return int.from_bytes(hashlib.sha256(f"scoresde-ddp {seed} {step}".encode()).digest()[:8], "little") >> 1


def draws(cfg, sde, rows, dim, step):
    """The global batch's draws of step `step`: data row indices, times (f32) and a, sigma, w
    (computed in f64, rounded to f32 as scoresde does), a U(0, 1) per row, the noise."""
    g = torch.Generator().manual_seed(step_seed(cfg["seed"], step))
    b = cfg["batch_size"]
    idx = torch.randint(rows, (b,), generator=g)
    t = cfg["t_min"] + (1.0 - cfg["t_min"]) * torch.rand(b, generator=g, dtype=torch.float64)
    u = torch.rand(b, generator=g)
    eps = torch.randn(b, dim, generator=g)
    a, sigma, g2 = vp_coefs(sde, t)
    w = torch.ones_like(t) if cfg["weighting"] == "eps" else g2 / sigma.square()
    return dict(idx=idx, t=t.float(), a=a.float(), sigma=sigma.float(), w=w.float(), u=u, eps=eps)


def dsm_loss(net, model, cfg, x0, d, y=None):
    """The loss of `model` (the network, possibly DDP-wrapped) on rows x0 with draws d."""
    a, sigma = d["a"][:, None], d["sigma"][:, None]
    xt = x0 * a + d["eps"] * sigma
    if net.classifier:
        return F.cross_entropy(model(xt, d["t"]), y)
    if net.label_width:
        y = torch.where(d["u"] < cfg["label_dropout"], torch.full_like(y, net.classes), y)
    out = model(xt, d["t"], y) if y is not None else model(xt, d["t"])
    r = d["eps"] - nets.eps_hat(net.config.get("parameterization", "eps"), out, xt, a, sigma)
    return (r.square().mean(dim=1) * d["w"]).mean()


def optimise(net, opt, ema, loss, cfg, step):
    """Backward, then scoresde's update of step `step`: warm-up lr, clipping, Adam, EMA."""
    loss.backward()
    lr = cfg["lr"] * min(1.0, (step + 1) / cfg["warmup"]) if cfg["warmup"] > 0 else cfg["lr"]
    for group in opt.param_groups:
        group["lr"] = lr
    params = [p for _, p in net.named_tensors()]
    if cfg["grad_clip"] > 0:
        torch.nn.utils.clip_grad_norm_(params, cfg["grad_clip"])
    opt.step()
    opt.zero_grad(set_to_none=False)
    decay = min(cfg["ema_decay"], (1.0 + step) / (10.0 + step))
    with torch.no_grad():
        ema.lerp_(net.flatten(), 1.0 - decay)


def make_adam(net):
    return torch.optim.Adam([p for _, p in net.named_tensors()], lr=1.0, betas=ADAM_BETAS, eps=ADAM_EPS,
                            foreach=False)


def adam_moments(net, opt):
    """Adam's moments, flat in scoresde's layout (zeros before the first step)."""
    ms, vs = [], []
    for _, p in net.named_tensors():
        st = opt.state.get(p, {})
        ms.append(st["exp_avg"].reshape(-1) if "exp_avg" in st else torch.zeros(p.numel(), device=p.device))
        vs.append(st["exp_avg_sq"].reshape(-1) if "exp_avg_sq" in st else torch.zeros(p.numel(), device=p.device))
    return torch.cat(ms).detach(), torch.cat(vs).detach()


def set_adam(net, opt, m, v, step):
    """Restores Adam's moments (flat, scoresde's layout) after `step` steps."""
    if step == 0:
        return
    m_named, v_named = net.unflatten(m), net.unflatten(v)
    for name, p in net.named_tensors():
        opt.state[p] = {"step": torch.tensor(float(step)), "exp_avg": m_named[name].clone().to(p.device),
                        "exp_avg_sq": v_named[name].clone().to(p.device)}


class State:
    """A trainer's state: network (training weights), Adam, EMA (flat), step, loss log, meta."""

    def __init__(self, net, meta, device):
        self.net = net.to(device)
        self.meta = meta
        self.opt = make_adam(self.net)
        self.ema = net.flatten().clone()
        self.step = meta.get("step", 0)
        self.losses = [list(e) for e in meta.get("losses", [])]

    @classmethod
    def from_checkpoint(cls, spec, device):
        meta, tensors = ckpt.load(spec)
        net = nets.build(meta["net"])
        ckpt.set_weights(net, ckpt.load_into(net, tensors, "model"), tensors)
        st = cls(net, meta, device)
        st.ema = net.flatten(ckpt.load_into(net, tensors, "ema")).to(device)
        n = st.ema.numel()
        for k in ("adam.m", "adam.v"):
            if k not in tensors or tensors[k].shape != (n,):
                raise ckpt.CheckpointError(f"{spec}: checkpoint tensor {k} missing or not of shape [{n}]")
        set_adam(st.net, st.opt, tensors["adam.m"].to(device), tensors["adam.v"].to(device), st.step)
        return st

    def save(self, spec):
        m, v = adam_moments(self.net, self.opt)
        meta = dict(self.meta, step=self.step, losses=self.losses)
        ema = self.net.unflatten(self.ema)
        return ckpt.save(spec, meta, self.net, dict(self.net.named_tensors()), ema, m, v)

    def ema_net(self):
        """A copy of the network holding the EMA weights, in eval mode, on the CPU."""
        net = nets.build(self.meta["net"])
        with torch.no_grad():
            for name, t in self.net.unflatten(self.ema.cpu()).items():
                dict(net.named_parameters())[name].copy_(t)
            net.freqs.copy_(self.net.freqs.cpu())
        return net.eval()


def export_torchscript(net, path):
    """TorchScript of `net` (x [batch, dim], t [batch][, y [batch]]), traced, written atomically."""
    dim = net.config["dim"]
    x, t = torch.zeros(2, dim), torch.full((2,), 0.5)
    args = (x, t, torch.zeros(2, dtype=torch.long)) if net.label_width else (x, t)
    traced = torch.jit.trace(net, args)
    import io
    buf = io.BytesIO()
    torch.jit.save(traced, buf)
    ckpt.write_atomic(path, buf.getvalue())


# ---- the command ------------------------------------------------------------------------------
def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", help=".npy rows (e.g. from `scoresde train ... --save-train FILE.npy`)")
    p.add_argument("--labels", help=".npy of integer labels (conditional score or classifier)")
    p.add_argument("--out", required=True, help="run folder; the checkpoint is OUT/model.safetensors (+ .json)")
    p.add_argument("--resume", action="store_true", help="continue OUT's checkpoint (network, settings, state)")
    p.add_argument("--init", help="start from this checkpoint's weights, EMA and Adam state (its settings too)")
    p.add_argument("--force", action="store_true", help="overwrite an existing checkpoint in OUT")
    p.add_argument("--steps", type=int, help=f"total steps (default {TRAIN_DEFAULTS['steps']})")
    p.add_argument("--batch-size", type=int, default=TRAIN_DEFAULTS["batch_size"], help="GLOBAL batch (all ranks)")
    p.add_argument("--lr", type=float, default=TRAIN_DEFAULTS["lr"])
    p.add_argument("--warmup", type=int, default=TRAIN_DEFAULTS["warmup"])
    p.add_argument("--grad-clip", type=float, default=TRAIN_DEFAULTS["grad_clip"])
    p.add_argument("--ema-decay", type=float, default=TRAIN_DEFAULTS["ema_decay"])
    p.add_argument("--weighting", choices=("eps", "likelihood"), default="eps")
    p.add_argument("--t-min", type=float, default=TRAIN_DEFAULTS["t_min"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--label-dropout", type=float, default=TRAIN_DEFAULTS["label_dropout"])
    p.add_argument("--net", choices=("mlp", "unet"), default="mlp")
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--activation", choices=tuple(nets.ACTIVATIONS), default="silu")
    p.add_argument("--embedding-dim", type=int, default=32)
    p.add_argument("--parameterization", choices=nets.PARAMETERIZATIONS, default="eps")
    p.add_argument("--conditional", action="store_true", help="class-conditional score (needs --labels)")
    p.add_argument("--image-shape", help="C,H,W of the images (product = data columns); needed by --net unet")
    p.add_argument("--pixel-range", help="LO,HI: scale images from their pixel range to [-1, 1] as scoresde "
                   "does for image sets (e.g. 0,255 for `--save-train` of mnist); default: standardise columns")
    p.add_argument("--base-channels", type=int, default=16)
    p.add_argument("--channel-mults", default="1,2,2")
    p.add_argument("--groups", type=int, default=8)
    p.add_argument("--beta-min", type=float, default=0.1)
    p.add_argument("--beta-max", type=float, default=20.0)
    p.add_argument("--save-every", type=int, default=0, help="checkpoint every N steps (0: only at the end)")
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--torchscript", help="also write the EMA network as TorchScript to this file")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    return p.parse_args(argv)


def image_shape(text, dim):
    """(C, H, W) from "C,H,W", with C*H*W = dim."""
    try:
        c, h, w = (int(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--image-shape {text}: expected C,H,W (three integers)") from None
    if min(c, h, w) < 1 or c * h * w != dim:
        raise UsageError(f"--image-shape {text}: {c * h * w} pixels, but the data have {dim} columns")
    return c, h, w


def new_meta(a, x, y):
    dim = x.shape[1]
    classes = int(y.max()) + 1 if y is not None and (a.conditional) else 0
    net = dict(dim=dim, width=a.width, depth=a.depth, activation=a.activation,
               embedding=dict(kind="sinusoidal", dim=a.embedding_dim), parameterization=a.parameterization,
               classes=classes, head="score", arch=dict(kind="mlp"))
    if a.net == "unet":
        if not a.image_shape:
            raise UsageError("--net unet needs --image-shape C,H,W")
        c, h, w = image_shape(a.image_shape, dim)
        net["arch"] = dict(kind="unet", channels=c, height=h, width=w, base=a.base_channels,
                           mults=[int(m) for m in a.channel_mults.split(",")], res_blocks=1, attn=[],
                           dropout=0.0, groups=a.groups)
    train = dict(steps=a.steps or TRAIN_DEFAULTS["steps"], batch_size=a.batch_size, lr=a.lr, warmup=a.warmup,
                 grad_clip=a.grad_clip, ema_decay=a.ema_decay, weighting=a.weighting, t_min=a.t_min, seed=a.seed,
                 label_dropout=a.label_dropout)
    return dict(format=ckpt.FORMAT_VERSION, net=net, sde=dict(kind="vp", beta_min=a.beta_min, beta_max=a.beta_max),
                train=train, step=0, data=None, losses=[])


def check_train(cfg, world):
    if cfg["steps"] < 1 or cfg["batch_size"] < 1:
        raise UsageError("--steps and --batch-size must be at least 1")
    if cfg["batch_size"] % world:
        raise UsageError(f"--batch-size {cfg['batch_size']} is the global batch: it must divide evenly "
                         f"among the {world} processes")
    if not (cfg["lr"] > 0 and math.isfinite(cfg["lr"])):
        raise UsageError(f"--lr {cfg['lr']}: must be finite and > 0")
    if not 0.0 <= cfg["ema_decay"] < 1.0:
        raise UsageError(f"--ema-decay {cfg['ema_decay']}: must be in [0, 1)")
    if not 0.0 < cfg["t_min"] < 1.0:
        raise UsageError(f"--t-min {cfg['t_min']}: must be in (0, 1)")


def train(argv=None):
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = a.device == "cuda" or (a.device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise UsageError("--device cuda: CUDA is not available")
    device = torch.device(f"cuda:{local}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world > 1:
        dist.init_process_group("nccl" if use_cuda else "gloo")
    try:
        return run(a, world, rank, device)
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def run(a, world, rank, device):
    spec = os.path.join(a.out, "model")  # as `scoresde train --out DIR`: DIR/model.safetensors
    weights, _ = ckpt.paths(spec)
    if a.resume or a.init:
        st = State.from_checkpoint(spec if a.resume else a.init, device)
        if a.steps:
            st.meta["train"]["steps"] = a.steps
    else:
        if os.path.exists(weights) and not a.force:
            raise UsageError(f"{weights} exists: pass --resume to continue it or --force to start over")
        st = None
    if not a.data:
        raise UsageError("--data FILE.npy is required")
    x, y = load_data(a.data, a.labels)
    if st is None:
        meta = new_meta(a, x, y)
        mean, std = fit_scaling(x)
        lo, hi = x.min(axis=0), x.max(axis=0)
        if a.pixel_range:
            # scoresde's `Scaling::from_range`; the pixel range is every column's range.
            try:
                plo, phi = (float(v) for v in a.pixel_range.split(","))
            except ValueError:
                raise UsageError(f"--pixel-range {a.pixel_range}: expected LO,HI") from None
            if not (math.isfinite(plo) and math.isfinite(phi) and plo < phi) or x.min() < plo or x.max() > phi:
                raise UsageError(f"--pixel-range {a.pixel_range}: need LO < HI around the data "
                                 f"(values {x.min()}..{x.max()})")
            d = x.shape[1]
            mean, std = np.full(d, 0.5 * plo + 0.5 * phi), np.full(d, 0.5 * phi - 0.5 * plo)
            lo, hi = np.full(d, plo), np.full(d, phi)
        shape = [int(x.shape[1])]
        if a.image_shape:
            shape = list(image_shape(a.image_shape, x.shape[1]))
        meta["data"] = dict(source=os.path.abspath(a.data), rows=int(x.shape[0]), mean=mean.tolist(),
                            std=std.tolist(), range=dict(min=lo.tolist(), max=hi.tolist()), shape=shape)
        torch.manual_seed(a.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
        st = State(nets.build(meta["net"]), meta, device)
    data_meta = st.meta["data"]
    if data_meta["rows"] != x.shape[0] or len(data_meta["mean"]) != x.shape[1]:
        raise UsageError(f"--data {a.data}: {x.shape[0]} rows of {x.shape[1]} columns, but the checkpoint was "
                         f"trained on {data_meta['rows']} rows of {len(data_meta['mean'])}")
    cfg = st.meta["train"]
    check_train(cfg, world)
    net = st.net
    if (net.label_width or net.classifier) and y is None:
        raise UsageError("a conditional score or classifier needs --labels")
    data = torch.from_numpy((x - np.array(data_meta["mean"])) / np.array(data_meta["std"])).float().to(device)
    labels = torch.from_numpy(y).to(device) if y is not None and (net.label_width or net.classifier) else None
    model = net
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    per = cfg["batch_size"] // world
    rows = slice(rank * per, (rank + 1) * per)
    net.train()
    kill = os.environ.get("SCORESDE_DDP_KILL_AT")  # "STEP:RANK": test hook, SIGKILL that rank before STEP
    kill = tuple(int(v) for v in kill.split(":")) if kill else None
    started, first, acc, count = time.time(), st.step, 0.0, 0
    while st.step < cfg["steps"]:
        if kill and kill == (st.step, rank):
            os.kill(os.getpid(), 9)
        d = draws(cfg, st.meta["sde"], data.shape[0], data.shape[1], st.step)
        d = {k: v[rows].to(device) for k, v in d.items()}
        x0 = data[d["idx"]]
        yb = labels[d["idx"]] if labels is not None else None
        loss = dsm_loss(net, model, cfg, x0, d, yb)
        optimise(net, st.opt, st.ema, loss, cfg, st.step)
        st.step += 1
        acc, count = acc + loss.detach(), count + 1
        if st.step % max(a.log_every, 1) == 0 or st.step == cfg["steps"]:
            mean = acc / count
            if world > 1:
                dist.all_reduce(mean)
                mean = mean / world
            mean = float(mean)
            if not math.isfinite(mean):
                raise UsageError(f"training diverged by step {st.step}; lower --lr or keep gradient clipping on")
            st.losses.append([st.step, mean])
            acc, count = 0.0, 0
            if rank == 0:
                print(f"step {st.step}/{cfg['steps']} loss {mean:.4f}", flush=True)
        if a.save_every and st.step % a.save_every == 0 and st.step < cfg["steps"] and rank == 0:
            st.save(spec)
    seconds = time.time() - started
    if rank == 0:
        path = st.save(spec)
        n = st.step - first
        print(f"{n} steps in {seconds:.2f} s ({n / max(seconds, 1e-9):.1f} steps/s, "
              f"{n * cfg['batch_size'] / max(seconds, 1e-9):.0f} samples/s) on {world} process(es)", flush=True)
        print(f"wrote {path} (+ .json sidecar)", flush=True)
        if a.torchscript:
            export_torchscript(st.ema_net(), a.torchscript)
            print(f"wrote {a.torchscript} (TorchScript of the EMA network)", flush=True)
    if world > 1:
        dist.barrier()
    return st


def main():
    try:
        train()
    except (UsageError, ckpt.CheckpointError) as e:
        print(f"train_ddp: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
