"""Reference sampling loops run by diffusers itself, with injected noise (tests/diffusers_parity.rs).

    python python/scoresde/diffusers_ref.py OUT_DIR [--steps 10] [--batch 4] [--x-t X.npy]
        [--fit-steps 200]

Builds two tiny networks with fixed torch seeds, fits each for `--fit-steps` Adam steps
of denoising on 8x8 bar images (so that their outputs have the size of a trained model's;
a random eps network drives x0_hat to hundreds), and exports each with `torch.jit.trace`
as `forward(x, timesteps[B]) -> tensor`:

* `unet.pt`: a diffusers `UNet2DModel` (sample_size 8, 1 channel, block_out_channels
  (8, 16), 4 groups, one layer per block) predicting eps from the timestep `i = 0 .. 999`,
  traced as the README shows: `torch.jit.trace(lambda x, t: unet(x, t,
  return_dict=False)[0], (x, t))` after `unet.requires_grad_(False)`;
* `vnet.pt`: a small score_sde-style convolutional network that takes continuous time
  `t` in [0, 1] and embeds the label `t * 999` (score_sde's discrete-time models, knots
  `t_i = i / (N - 1)`), predicting v = a eps - sigma x0 (Salimans & Ho 2022).

Then runs diffusers' schedulers (`DDPMScheduler`, `DDIMScheduler`,
`DPMSolverMultistepScheduler`, `EulerDiscreteScheduler`, `HeunDiscreteScheduler`) on
DDPM's linear schedule (1000 steps, 1e-4 .. 0.02) through the traced network, every loop
from the same x_T (`--x-t`, or drawn here) and, where the scheduler draws noise, with the per-step normals
`noise[k]` of step k injected (DDIM and DPM-Solver take `variance_noise`; DDPM's
`randn_tensor` is replaced for the loop). Everything is float32. Writes
`OUT_DIR/NAME.safetensors` per run (`x_T`, `noise` [steps, B, C, H, W], `timesteps` as
float64, `final`), `OUT_DIR/schedule.safetensors` (diffusers' float32 `alphas_cumprod`)
and `OUT_DIR/manifest.json`, one entry per run with the scheduler's settings.

Exit code 3 with a line `diffusers reference: unavailable: ...` when torch or diffusers
cannot be imported (the Rust test reports it as its reason to skip).
"""
import argparse
import contextlib
import json
import math
import os
import sys
import warnings

try:
    import torch
    from safetensors.torch import save_file
    import diffusers
    from diffusers import (
        DDIMScheduler,
        DDPMScheduler,
        DPMSolverMultistepScheduler,
        EulerDiscreteScheduler,
        HeunDiscreteScheduler,
        UNet2DModel,
    )
    from diffusers.schedulers import scheduling_ddpm
except ImportError as e:  # the Rust test reports this as its skip reason
    print(f"diffusers reference: unavailable: {e}", file=sys.stderr)
    sys.exit(3)

N_TRAIN = 1000
SCHEDULE = dict(num_train_timesteps=N_TRAIN, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")


def tiny_unet():
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(8, 16),
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    )
    return unet


class VNet(torch.nn.Module):
    """score_sde-style: continuous `t` in [0, 1], label `t * 999` embedded by sinusoids
    (Vaswani et al. 2017) and added to the features of a two-convolution residual block;
    the output is read as v."""

    def __init__(self, channels=1, width=16, emb=16):
        super().__init__()
        self.emb = emb
        self.inp = torch.nn.Conv2d(channels, width, 3, padding=1)
        self.time = torch.nn.Sequential(torch.nn.Linear(emb, width), torch.nn.SiLU(), torch.nn.Linear(width, width))
        self.norm = torch.nn.GroupNorm(4, width)
        self.mid = torch.nn.Conv2d(width, width, 3, padding=1)
        self.out = torch.nn.Conv2d(width, channels, 3, padding=1)

    def forward(self, x, t):
        label = t * 999.0
        half = self.emb // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        arg = label.float()[:, None] * freqs[None, :]
        e = self.time(torch.cat([arg.sin(), arg.cos()], dim=1))
        h = self.inp(x) + e[:, :, None, None]
        h = h + self.mid(torch.nn.functional.silu(self.norm(h)))
        return self.out(torch.nn.functional.silu(h))


def tiny_vnet():
    torch.manual_seed(1)
    return VNet().eval()


def bars(n):
    """`n` 8x8 images in [-1, 1]: a bright horizontal or vertical bar on a dark ground."""
    x = -torch.ones(n, 1, 8, 8)
    for i in range(n):
        k = 1 + (i * 5) % 6
        if i % 2 == 0:
            x[i, 0, k, 1:7] = 1.0
        else:
            x[i, 0, 1:7, k] = 1.0
    return x


def fit(net, kind, steps, seed):
    """A short denoising fit (Ho et al. 2020, eq. 14; v-target of Salimans & Ho 2022 for the
    vnet) on `bars`, so that the network's predictions are of the right size and the samples
    stay in a data-like range (a random network's eps drives DDPM's x0_hat to hundreds)."""
    g = torch.Generator().manual_seed(seed)
    abar = DDPMScheduler(**SCHEDULE).alphas_cumprod
    data = bars(24)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(steps):
        x0 = data[torch.randint(0, len(data), (16,), generator=g)]
        i = torch.randint(0, N_TRAIN, (16,), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        a, sig = abar[i].sqrt()[:, None, None, None], (1 - abar[i]).sqrt()[:, None, None, None]
        x = a * x0 + sig * eps
        t = i.float() if kind == "unet" else i.float() / (N_TRAIN - 1)
        target = eps if kind == "unet" else a * eps - sig * x0
        out = net(x, t, return_dict=False)[0] if kind == "unet" else net(x, t)
        loss = (out - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@contextlib.contextmanager
def ddpm_noise(steps, noise):
    """Replaces DDPMScheduler's `randn_tensor` by the recorded normals of the current step."""
    orig = scheduling_ddpm.randn_tensor
    used = []

    def replay(shape, **_kwargs):
        k = steps[0]
        used.append(k)
        assert tuple(shape) == tuple(noise[k].shape), (shape, noise[k].shape)
        return noise[k].clone()

    scheduling_ddpm.randn_tensor = replay
    try:
        yield used
    finally:
        scheduling_ddpm.randn_tensor = orig


def model_input_time(net_kind, t, batch):
    """What the traced network takes for diffusers' timestep `t`: the timestep itself (unet)
    or the continuous time `t / (N - 1)` (vnet; float64 quotient rounded to float32)."""
    t = float(t)
    value = t if net_kind == "unet" else t / (N_TRAIN - 1)
    return torch.full((batch,), value, dtype=torch.float32)


def run(name, net_kind, net, scheduler, steps, x_t, noise, call, out_dir, extra):
    """Runs `scheduler` for `steps` steps from `x_t`, as diffusers' pipelines do, and saves it."""
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps.clone()
    sample = x_t * scheduler.init_noise_sigma
    batch = x_t.shape[0]
    k = [0]
    calls = 0
    with ddpm_noise(k, noise) as used, torch.no_grad():
        for i, t in enumerate(timesteps):
            k[0] = i
            inp = scheduler.scale_model_input(sample, t)
            out = net(inp, model_input_time(net_kind, t, batch))
            calls += 1
            sample = call(scheduler, out, t, sample, noise[min(i, len(noise) - 1)]).prev_sample
    save_file(
        {
            "x_T": x_t.contiguous(),
            "noise": noise.contiguous(),
            "timesteps": timesteps.to(torch.float64).contiguous(),
            "final": sample.contiguous(),
        },
        os.path.join(out_dir, f"{name}.safetensors"),
    )
    entry = dict(
        name=name,
        net=f"{net_kind}.pt",
        scheduler=type(scheduler).__name__,
        steps=steps,
        model_calls=calls,
        init_noise_sigma=float(scheduler.init_noise_sigma),
        ddpm_noise_draws=len(used),
        # Plain settings only, non-finite floats as text (JSON has no infinity).
        config={k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in scheduler.config.items() if isinstance(v, (int, float, str, bool, type(None)))},
    )
    entry.update(extra)
    return entry


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--fit-steps", type=int, default=200)
    p.add_argument("--x-t", help="x_T as a float32 .npy file of B rows of 64 values (default: drawn here)")
    args = p.parse_args()
    torch.set_num_threads(1)
    # Tracing UNet2DModel warns about its shape asserts; the traced module is checked below.
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    os.makedirs(args.out_dir, exist_ok=True)
    shape = (1, 8, 8)
    x_given = None
    if args.x_t:
        import numpy as np

        x_given = torch.from_numpy(np.load(args.x_t).astype(np.float32)).reshape(-1, *shape)
    b = args.batch if x_given is None else x_given.shape[0]

    nets = {}
    for kind, build in (("unet", tiny_unet), ("vnet", tiny_vnet)):
        net = fit(build().train(), kind, args.fit_steps, seed=7).requires_grad_(False)
        x = torch.randn(b, *shape, generator=torch.Generator().manual_seed(5))
        t = torch.full((b,), 500.0 if kind == "unet" else 0.5)
        if kind == "unet":
            # The README's recipe: a diffusers model traced through a function.
            eager = lambda x, t: net(x, t, return_dict=False)[0]  # noqa: E731
        else:
            eager = net
        with torch.no_grad():
            traced = torch.jit.trace(eager, (x, t), check_trace=False)
            # The traced network is the eager one (a different batch size as well).
            for bb in (b, 2 * b):
                xx = torch.randn(bb, *shape, generator=torch.Generator().manual_seed(bb))
                tt = torch.linspace(0.0, 999.0 if kind == "unet" else 1.0, bb)
                d = (traced(xx, tt) - eager(xx, tt)).abs().max().item()
                assert d <= 1e-6, f"{kind}: traced differs from eager by {d}"
        path = os.path.join(args.out_dir, f"{kind}.pt")
        traced.save(path)
        nets[kind] = torch.jit.load(path)

    gen = torch.Generator().manual_seed(1234)
    x_t = torch.randn(b, *shape, generator=gen) if x_given is None else x_given
    noise = torch.randn(args.steps, b, *shape, generator=gen)

    def ddim(eta, clipped_eps=False):
        return lambda s, out, t, x, z: s.step(out, t, x, eta=eta, variance_noise=z,
                                              use_clipped_model_output=clipped_eps)

    def plain(s, out, t, x, _z):  # DDPM draws through `ddpm_noise`; the others draw nothing
        return s.step(out, t, x)

    def pair(solver, end="alpha-one", exact=True, prior="z"):
        """A scoresde solver that runs the same loop: `end` is how its grid ends (the step to
        alphabar = 1, or the last timestep followed by the Tweedie step); `exact`: whether it
        is the same arithmetic (else the test reports the difference); `prior`: its x_T is
        `x_T` ("z") or `sigma(T) x_T` ("sigma"; see `init_noise_sigma` below)."""
        return dict(solver=solver, end=end, exact=exact, prior=prior)

    small, large = dict(variance_type="fixed_small"), dict(variance_type="fixed_large")
    noclip = dict(clip_sample=False)
    v = dict(prediction_type="v_prediction")
    dpmpp = dict(algorithm_type="dpmsolver++", solver_order=2, lower_order_final=True)
    cases = [
        # (name, network, scheduler, step call, spacing, scoresde pairings)
        ("ddpm-small-leading", "unet", DDPMScheduler(**SCHEDULE, **small, **noclip), plain, "leading",
         [pair("ancestral")]),
        ("ddpm-small-linspace", "unet", DDPMScheduler(**SCHEDULE, **small, **noclip, timestep_spacing="linspace"),
         plain, "linspace", [pair("ancestral")]),
        ("ddpm-large-trailing", "unet", DDPMScheduler(**SCHEDULE, **large, **noclip, timestep_spacing="trailing"),
         plain, "trailing", [pair("ancestral-large")]),
        # diffusers' default clip_sample=True clips x0_hat to [-1, 1].
        ("ddpm-small-clip-leading", "unet", DDPMScheduler(**SCHEDULE, **small), plain, "leading",
         [pair("ancestral:clip")]),
        ("ddim-eta0-trailing", "unet", DDIMScheduler(**SCHEDULE, **noclip, timestep_spacing="trailing"), ddim(0.0),
         "trailing", [pair("ddim"), pair("ddim", end="tweedie"), pair("dpm1", end="tweedie")]),
        # Stable Diffusion's configurations: "leading" with steps_offset = 1.
        ("ddim-eta0-leading-offset1", "unet", DDIMScheduler(**SCHEDULE, **noclip, steps_offset=1), ddim(0.0),
         "leading:1", [pair("ddim")]),
        # DDIMScheduler steps from t to t - N // n, not to the next "linspace" timestep
        # (999 -> 899 while the list goes on at 888): no grid reproduces it.
        ("ddim-eta0-linspace", "unet", DDIMScheduler(**SCHEDULE, **noclip, timestep_spacing="linspace"), ddim(0.0),
         "linspace", [pair("ddim", exact=False)]),
        ("ddim-eta1-leading", "unet", DDIMScheduler(**SCHEDULE, **noclip), ddim(1.0), "leading",
         [pair("ddim-eta1"), pair("ancestral")]),
        # Clipping with eps re-derived from the clipped x0_hat (DDIMScheduler.step's
        # use_clipped_model_output=True), and as DDIMPipeline calls it (False).
        ("ddim-eta0-clip-clipped-eps", "unet", DDIMScheduler(**SCHEDULE, timestep_spacing="trailing"),
         ddim(0.0, clipped_eps=True), "trailing", [pair("ddim:clip")]),
        ("ddim-eta0-clip-pipeline", "unet", DDIMScheduler(**SCHEDULE, timestep_spacing="trailing"), ddim(0.0),
         "trailing", [pair("ddim:clip", exact=False)]),
        ("dpmpp-2m-trailing", "unet", DPMSolverMultistepScheduler(**SCHEDULE, **dpmpp, timestep_spacing="trailing"),
         plain, "trailing", [pair("dpm2m:lower-order-final"), pair("dpm2m", end="tweedie")]),
        # Euler and Heun work on x / a at sigma / a and, for "linspace" and "trailing",
        # start from init_noise_sigma = sigma_max (not sqrt(sigma_max^2 + 1)): x_T is
        # sqrt(1 - alphabar_T) z rather than z, which scoresde reproduces with prior "sigma".
        ("euler-trailing", "unet", EulerDiscreteScheduler(**SCHEDULE, timestep_spacing="trailing"), plain,
         "trailing", [pair("ddim", prior="sigma"), pair("ddim", exact=False), pair("ode-euler", exact=False)]),
        # "leading" starts from init_noise_sigma = sqrt(sigma_max^2 + 1): x_T is z.
        ("euler-leading", "unet", EulerDiscreteScheduler(**SCHEDULE, timestep_spacing="leading"), plain,
         "leading", [pair("ddim")]),
        ("heun-trailing", "unet", HeunDiscreteScheduler(**SCHEDULE, timestep_spacing="trailing"), plain, "trailing",
         [pair("edm-heun", end="tweedie", prior="sigma"), pair("edm-heun", end="tweedie", exact=False)]),
        ("vnet-ddim-eta0-trailing", "vnet", DDIMScheduler(**SCHEDULE, **noclip, **v, timestep_spacing="trailing"),
         ddim(0.0), "trailing", [pair("ddim", end="tweedie")]),
        ("vnet-ddpm-small-leading", "vnet", DDPMScheduler(**SCHEDULE, **small, **noclip, **v), plain, "leading",
         [pair("ancestral", end="tweedie")]),
    ]
    manifest = dict(diffusers=diffusers.__version__, torch=torch.__version__, batch=b, shape=list(shape),
                    steps=args.steps, runs=[])
    for name, kind, sched, call, spacing, pairs in cases:
        assert sched.config.timestep_spacing == spacing.split(":")[0], (name, sched.config.timestep_spacing)
        assert sched.config.steps_offset == int(spacing.split(":")[1] if ":" in spacing else 0), name
        extra = dict(spacing=spacing, pairs=pairs, prediction="eps" if kind == "unet" else "v",
                     time_input="timestep" if kind == "unet" else "t",
                     convention="shifted" if kind == "unet" else "endpoints")
        manifest["runs"].append(run(name, kind, nets[kind], sched, args.steps, x_t, noise, call, args.out_dir, extra))
        print(f"diffusers reference: {name}: {manifest['runs'][-1]['model_calls']} network calls", file=sys.stderr)
    save_file({"alphas_cumprod": DDPMScheduler(**SCHEDULE).alphas_cumprod.contiguous()},
              os.path.join(args.out_dir, "schedule.safetensors"))
    with open(os.path.join(args.out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, allow_nan=False)


if __name__ == "__main__":
    main()
