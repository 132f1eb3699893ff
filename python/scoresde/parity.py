"""Parity cases against the Rust implementation (run by tests/python_parity.rs).

    python python/scoresde/parity.py CASES.json

CASES.json lists cases; each names a scoresde checkpoint written by Rust (`ckpt`) and an
`inputs` safetensors file:
  {"kind": "forward", ...}: inputs x, t, a, sigma [, y]; writes `out` (safetensors) with the
      network's raw output `out` and `eps_hat` (Parameterization::eps_hat) of the EMA weights.
  {"kind": "step", ...}: inputs x0, t (f64), eps [, y]; takes train_ddp's step (loss, Adam,
      clipping, warm-up, EMA) on exactly that batch and writes the checkpoint `out` (a folder).
Exit code 3 with a line `python parity: unavailable: ...` when torch cannot be imported.
"""
import json
import os
import sys

try:
    import torch
    from safetensors.torch import load_file, save_file
except ImportError as e:  # the Rust test reports this as its skip reason
    print(f"python parity: unavailable: {e}", file=sys.stderr)
    sys.exit(3)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from scoresde import ckpt, nets, train_ddp  # noqa: E402


def forward(case):
    net, _ = ckpt.load_net(case["ckpt"], "ema")
    inp = load_file(case["inputs"])
    with torch.no_grad():
        out = net(inp["x"], inp["t"], inp.get("y"))
        result = {"out": out.clone()}
        if not net.classifier:
            param = net.config.get("parameterization", "eps")
            result["eps_hat"] = nets.eps_hat(param, out, inp["x"], inp["a"], inp["sigma"]).clone()
    save_file(result, case["out"])


def step(case):
    st = train_ddp.State.from_checkpoint(case["ckpt"], torch.device("cpu"))
    inp = load_file(case["inputs"])
    cfg = st.meta["train"]
    t64 = inp["t"]
    a, sigma, g2 = train_ddp.vp_coefs(st.meta["sde"], t64)
    w = torch.ones_like(t64) if cfg["weighting"] == "eps" else g2 / sigma.square()
    d = dict(t=t64.float(), a=a.float(), sigma=sigma.float(), w=w.float(), eps=inp["eps"],
             u=torch.ones(t64.shape[0]))  # u = 1: no label dropout, the labels are used as given
    st.net.train()
    loss = train_ddp.dsm_loss(st.net, st.net, cfg, inp["x0"], d, inp.get("y"))
    train_ddp.optimise(st.net, st.opt, st.ema, loss, cfg, st.step)
    st.step += 1
    st.save(case["out"])


def main():
    torch.set_num_threads(1)
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    for case in cases:
        {"forward": forward, "step": step}[case["kind"]](case)
    print(f"python parity: {len(cases)} cases done")


if __name__ == "__main__":
    main()
