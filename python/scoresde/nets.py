"""scoresde's score networks (src/net.rs, src/unet.rs) in PyTorch, parameter for parameter.

Parameter names, shapes and order are scoresde's checkpoint names and its flat layout:
`ScoreNet.flat_names()` lists them in the order of scoresde's ONE flat parameter vector, so
`flatten()`/`unflatten()` convert between this module and the flat tensors a checkpoint keeps
(`adam.m`, `adam.v`). The time-embedding frequencies are the buffer `freqs` (checkpoint tensor
`embedding.freqs`), never trained.

Forward, as `ScoreNet::forward_train` (no dropout in the MLP; the U-Net's dropout uses
PyTorch's masks here, not scoresde's seeded ones):
  emb = [sin(w t), cos(w t)]
  MLP: h = [x, emb, onehot(y, C + 1)] (the one-hot only for a conditional score; y = C is the
       null label, used when no labels are given); each hidden layer act(W h + b); the last
       layer linear. Output: `dim` values read as the parameterisation says, or C logits.
  U-Net: see UNet below.
`eps_hat()` converts an output into the noise estimate as `Parameterization::eps_hat`.
"""
import math

import torch
from torch import nn
from torch.nn import functional as F

ACTIVATIONS = {
    "silu": F.silu,
    "relu": F.relu,
    "gelu": lambda x: F.gelu(x, approximate="none"),
    "tanh": torch.tanh,
}
PARAMETERIZATIONS = ("eps", "score", "x0", "v")


def sinusoidal_freqs(dim):
    """`w_k = 1000 * 10000^(-k / (dim/2))`, computed in f64 and rounded to f32 as scoresde does."""
    half = dim // 2
    k = torch.arange(half, dtype=torch.float64)
    return (torch.exp(k * (-math.log(10_000.0) / half)) * 1000.0).float()


def embed(t, freqs):
    arg = t[:, None] * freqs[None, :]
    return torch.cat([arg.sin(), arg.cos()], dim=1)


def eps_hat(parameterization, out, x_t, a, sigma):
    """The noise estimate the output `out` at `x_t` stands for (`Parameterization::eps_hat`)."""
    if parameterization == "eps":
        return out
    if parameterization == "score":
        return -(out * sigma)
    if parameterization == "x0":
        return (x_t - out * a) / sigma
    if parameterization == "v":
        return (x_t * sigma + out * a) / (a.square() + sigma.square())
    raise ValueError(f"unknown parameterization {parameterization!r}; expected one of {PARAMETERIZATIONS}")


class ScoreNet(nn.Module):
    """Common part: the config (scoresde's `NetConfig` as a dict) and the flat layout."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        emb = config["embedding"]
        # Fourier frequencies are random: they come from the checkpoint (`load_freqs`).
        self.register_buffer("freqs", sinusoidal_freqs(emb["dim"]) if emb["kind"] == "sinusoidal"
                             else torch.zeros(emb["dim"] // 2))
        self.classes = int(config.get("classes", 0))
        self.classifier = config.get("head", "score") == "classifier"
        self.label_width = self.classes + 1 if self.classes > 0 and not self.classifier else 0

    def flat_names(self):
        return list(self._order)

    def named_tensors(self):
        params = dict(self.named_parameters())
        return [(n, params[n]) for n in self._order]

    def flatten(self, tensors=None):
        """The flat vector in scoresde's layout, of the parameters or of same-named `tensors`."""
        tensors = tensors if tensors is not None else dict(self.named_parameters())
        return torch.cat([tensors[n].detach().reshape(-1) for n in self._order])

    def unflatten(self, flat):
        """Named tensors (views of `flat`) shaped as the parameters."""
        params = dict(self.named_parameters())
        out, offset = {}, 0
        for n in self._order:
            k = params[n].numel()
            out[n] = flat[offset:offset + k].view(params[n].shape)
            offset += k
        if offset != flat.numel():
            raise ValueError(f"flat vector of {flat.numel()} values; the network has {offset} parameters")
        return out

    def labels(self, batch, y, device):
        if self.label_width == 0:
            if y is not None:
                raise ValueError("labels given, but the network takes no class labels")
            return None
        if y is None:
            return torch.full((batch,), self.label_width - 1, dtype=torch.long, device=device)
        return y.long()


class Mlp(ScoreNet):
    def __init__(self, config):
        super().__init__(config)
        dim, width, depth = config["dim"], config["width"], config["depth"]
        fan_in = dim + config["embedding"]["dim"] + self.label_width
        out = self.classes if self.classifier else dim
        sizes = [fan_in] + [width] * depth + [out]
        self.layers = nn.ModuleList([nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])])
        self.act = ACTIVATIONS[config.get("activation", "silu")]
        self._order = [f"layers.{i}.{p}" for i in range(len(self.layers)) for p in ("weight", "bias")]

    def forward(self, x, t, y=None):
        inputs = [x, embed(t, self.freqs)]
        y = self.labels(x.shape[0], y, x.device)
        if y is not None:
            inputs.append(F.one_hot(y, self.label_width).to(x.dtype))
        h = torch.cat(inputs, dim=1)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i + 1 < len(self.layers):
                h = self.act(h)
        return h


class ResBlock(nn.Module):
    def __init__(self, cin, cout, temb, groups, dropout):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=1e-5)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None
        self.dropout = dropout

    def names(self, prefix):
        mods = ["norm1", "conv1", "temb", "norm2", "conv2"] + (["skip"] if self.skip is not None else [])
        return [f"{prefix}.{m}.{p}" for m in mods for p in ("weight", "bias")]

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb(temb)[:, :, None, None]
        h = F.silu(self.norm2(h))
        if self.dropout > 0:
            h = F.dropout(h, self.dropout, self.training)
        h = self.conv2(h)
        return (x if self.skip is None else self.skip(x)) + h


class Attention(nn.Module):
    def __init__(self, ch, groups):
        super().__init__()
        self.norm = nn.GroupNorm(groups, ch, eps=1e-5)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)

    def names(self, prefix):
        return [f"{prefix}.{m}.{p}" for m in ("norm", "qkv", "proj") for p in ("weight", "bias")]

    def forward(self, x):
        b, c = x.shape[:2]
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3 * c, -1).split(c, dim=1)
        w = torch.softmax(q.transpose(1, 2).bmm(k) * (1.0 / math.sqrt(c)), dim=-1)
        return x + self.proj(v.bmm(w.transpose(1, 2)).reshape(x.shape))


class Level(nn.Module):
    def __init__(self):
        super().__init__()
        self.res = nn.ModuleList()
        self.attn = nn.ModuleList()


class Mid(nn.Module):
    def __init__(self, ch, temb, groups, dropout, attn):
        super().__init__()
        self.res = nn.ModuleList([ResBlock(ch, ch, temb, groups, dropout), ResBlock(ch, ch, temb, groups, dropout)])
        self.attn = Attention(ch, groups) if attn else None


def _pair(prefix):
    return [f"{prefix}.weight", f"{prefix}.bias"]


class UNet(ScoreNet):
    """src/unet.rs: temb = silu(temb.1(silu(temb.0(emb))) [+ class_emb[y]]); conv_in; per level
    residual blocks [+ attention] and a stride-2 3x3 `downsample` (not on the last level); the
    middle res, [attn], res; then either the decoder (per level, last first, res_blocks + 1
    blocks over cat(h, skip), nearest upsampling to the skip's size and a 3x3 conv; out.conv of
    silu(out.norm(h))) or the classifier head (head.linear of the spatial mean of
    silu(head.norm(h)))."""

    def __init__(self, config):
        super().__init__(config)
        u = config["arch"]
        channels, height, base, mults = u["channels"], u["height"], u["base"], u["mults"]
        res_blocks, groups, dropout = u["res_blocks"], u["groups"], u.get("dropout", 0.0)
        self.shape = (channels, height, u["width"])
        heights, h = [], height
        for _ in mults:
            heights.append(h)
            h = (h + 1) // 2
        attn_at = [hh in u.get("attn", []) for hh in heights]
        temb = 4 * base
        order = []
        self.temb = nn.ModuleList([nn.Linear(config["embedding"]["dim"], temb), nn.Linear(temb, temb)])
        order += _pair("temb.0") + _pair("temb.1")
        if self.label_width:
            self.class_emb = nn.Embedding(self.classes + 1, temb)
            order.append("class_emb.weight")
        self.conv_in = nn.Conv2d(channels, base, 3, padding=1)
        order += _pair("conv_in")
        skips, ch = [base], base
        self.down = nn.ModuleList()
        for i, m in enumerate(mults):
            level, out = Level(), base * m
            for j in range(res_blocks):
                level.res.append(ResBlock(ch, out, temb, groups, dropout))
                order += level.res[j].names(f"down.{i}.res.{j}")
                if attn_at[i]:
                    level.attn.append(Attention(out, groups))
                    order += level.attn[j].names(f"down.{i}.attn.{j}")
                ch = out
                skips.append(ch)
            level.downsample = nn.Conv2d(ch, ch, 3, stride=2, padding=1) if i + 1 < len(mults) else None
            if level.downsample is not None:
                skips.append(ch)
                order += _pair(f"down.{i}.downsample")
            self.down.append(level)
        self.mid = Mid(ch, temb, groups, dropout, attn_at[-1])
        order += self.mid.res[0].names("mid.res.0")
        if self.mid.attn is not None:
            order += self.mid.attn.names("mid.attn")
        order += self.mid.res[1].names("mid.res.1")
        if self.classifier:
            self.head = nn.ModuleDict({"norm": nn.GroupNorm(groups, ch, eps=1e-5), "linear": nn.Linear(ch, self.classes)})
            order += _pair("head.norm") + _pair("head.linear")
        else:
            up = {}
            for i in reversed(range(len(mults))):
                level, out = Level(), base * mults[i]
                for j in range(res_blocks + 1):
                    level.res.append(ResBlock(ch + skips.pop(), out, temb, groups, dropout))
                    order += level.res[j].names(f"up.{i}.res.{j}")
                    if attn_at[i]:
                        level.attn.append(Attention(out, groups))
                        order += level.attn[j].names(f"up.{i}.attn.{j}")
                    ch = out
                level.upsample = nn.Conv2d(ch, ch, 3, padding=1) if i > 0 else None
                if level.upsample is not None:
                    order += _pair(f"up.{i}.upsample")
                up[i] = level
            self.up = nn.ModuleList([up[i] for i in range(len(mults))])
            self.out = nn.ModuleDict({"norm": nn.GroupNorm(groups, ch, eps=1e-5),
                                      "conv": nn.Conv2d(ch, channels, 3, padding=1)})
            order += _pair("out.norm") + _pair("out.conv")
        self._order = order
        assert sorted(order) == sorted(n for n, _ in self.named_parameters()), "layout and modules disagree"

    def forward(self, x, t, y=None):
        """x: [batch, C*H*W] or [batch, C, H, W]; t: [batch]. Output shaped as x, or logits."""
        batch = x.shape[0]
        image = x.reshape(batch, *self.shape)
        temb = self.temb[1](F.silu(self.temb[0](embed(t, self.freqs))))
        y = self.labels(batch, y, x.device)
        if y is not None:
            temb = temb + self.class_emb(y)
        temb = F.silu(temb)
        h = self.conv_in(image)
        skips = [h]
        for level in self.down:
            for j, res in enumerate(level.res):
                h = res(h, temb)
                if len(level.attn):
                    h = level.attn[j](h)
                skips.append(h)
            if level.downsample is not None:
                h = level.downsample(h)
                skips.append(h)
        h = self.mid.res[0](h, temb)
        if self.mid.attn is not None:
            h = self.mid.attn(h)
        h = self.mid.res[1](h, temb)
        if self.classifier:
            return self.head["linear"](F.silu(self.head["norm"](h)).mean(dim=(2, 3)))
        for level in reversed(self.up):
            for j, res in enumerate(level.res):
                h = res(torch.cat([h, skips.pop()], dim=1), temb)
                if len(level.attn):
                    h = level.attn[j](h)
            if level.upsample is not None:
                h = F.interpolate(h, size=skips[-1].shape[2:], mode="nearest")
                h = level.upsample(h)
        return self.out["conv"](F.silu(self.out["norm"](h))).reshape(x.shape)


def build(config):
    """The network of a scoresde `NetConfig` (the sidecar's `net` object)."""
    arch = config.get("arch", {"kind": "mlp"})
    if arch.get("kind", "mlp") == "mlp":
        return Mlp(config)
    if arch["kind"] == "unet":
        return UNet(config)
    raise ValueError(f"unknown architecture {arch.get('kind')!r} (this module knows mlp and unet)")


def num_params(model):
    return sum(p.numel() for p in model.parameters())
