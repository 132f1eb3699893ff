"""scoresde's U-Net (src/unet.rs) written in PyTorch, layer for layer.

Module and parameter names are scoresde's checkpoint names (`down.0.res.0.conv1.weight`,
`mid.attn.qkv.bias`, `out.conv.weight`, ...), so `state_dict()` loads a scoresde checkpoint's
`ema.*` tensors with strict=True and a state dict of this module can be written back as one.
Initialisation is PyTorch's default for nn.Conv2d/nn.Linear, U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
the same law as scoresde's `Init::FanIn` (other draws, of course).

Forward, as in `UNet::forward` (score head, unconditional, no dropout unless asked):
  emb  = [sin(w t), cos(w t)], w_k = 1000 * 10000^(-k / (E/2))        (E = 32)
  temb = silu(temb.1(silu(temb.0(emb))))                               (width 4 * base)
  h = conv_in(x); skips = [h]
  per level i: per block j: h = res(h, temb) [-> attn]; skips += [h]; then a stride-2 3x3
               `downsample` (not on the last level); skips += [h]
  mid: res, [attn when the lowest height is listed], res
  per level i, last first: res_blocks + 1 blocks of res(cat(h, skips.pop()), temb) [-> attn];
               then (i > 0) nearest upsampling to the next skip's size and a 3x3 `upsample` conv
  out = out.conv(silu(out.norm(h)))
res(x) = skip(x) + conv2(drop(silu(norm2(conv1(silu(norm1(x))) + temb_proj(temb)))));
attn(x) = x + proj(v softmax(q^T k / sqrt(c))^T), single head, q, k, v from one 1x1 conv.
"""
import math

import torch
from torch import nn
from torch.nn import functional as F


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

    def forward(self, x):
        b, c = x.shape[:2]
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3 * c, -1).split(c, dim=1)
        w = torch.softmax(q.transpose(1, 2).bmm(k) * (1.0 / math.sqrt(c)), dim=-1)
        out = v.bmm(w.transpose(1, 2)).reshape(x.shape)
        return x + self.proj(out)


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


class UNet(nn.Module):
    """`UnetConfig` fields: channels, height, width, base, mults, res_blocks, attn (heights), dropout, groups."""

    def __init__(self, channels=1, height=28, width=28, base=16, mults=(1, 2, 2), res_blocks=1, attn=(),
                 dropout=0.0, groups=8, embed_dim=32):
        super().__init__()
        half = embed_dim // 2
        k = torch.arange(half, dtype=torch.float64)
        self.register_buffer("freqs", (torch.exp(k * (-math.log(10_000.0) / half)) * 1000.0).float())
        temb = 4 * base
        self.temb = nn.ModuleList([nn.Linear(embed_dim, temb), nn.Linear(temb, temb)])
        self.conv_in = nn.Conv2d(channels, base, 3, padding=1)
        heights, h = [], height
        for _ in mults:
            heights.append(h)
            h = (h + 1) // 2
        attn_at = [hh in attn for hh in heights]
        skips, ch = [base], base
        self.down = nn.ModuleList()
        for i, m in enumerate(mults):
            level, out = Level(), base * m
            for _ in range(res_blocks):
                level.res.append(ResBlock(ch, out, temb, groups, dropout))
                if attn_at[i]:
                    level.attn.append(Attention(out, groups))
                ch = out
                skips.append(ch)
            level.downsample = nn.Conv2d(ch, ch, 3, stride=2, padding=1) if i + 1 < len(mults) else None
            if level.downsample is not None:
                skips.append(ch)
            self.down.append(level)
        self.mid = Mid(ch, temb, groups, dropout, attn_at[-1])
        up = {}
        for i in reversed(range(len(mults))):
            level, out = Level(), base * mults[i]
            for _ in range(res_blocks + 1):
                level.res.append(ResBlock(ch + skips.pop(), out, temb, groups, dropout))
                if attn_at[i]:
                    level.attn.append(Attention(out, groups))
                ch = out
            level.upsample = nn.Conv2d(ch, ch, 3, padding=1) if i > 0 else None
            up[i] = level
        self.up = nn.ModuleList([up[i] for i in range(len(mults))])
        self.out = nn.ModuleDict({"norm": nn.GroupNorm(groups, ch, eps=1e-5), "conv": nn.Conv2d(ch, channels, 3, padding=1)})

    def forward(self, x, t):
        """x: [batch, C, H, W]; t: [batch] continuous times in (0, 1]. Returns eps_hat, shaped as x."""
        arg = t[:, None] * self.freqs[None, :]
        emb = torch.cat([arg.sin(), arg.cos()], dim=1)
        temb = F.silu(self.temb[1](F.silu(self.temb[0](emb))))
        h = self.conv_in(x)
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
        for level in reversed(self.up):
            for j, res in enumerate(level.res):
                h = res(torch.cat([h, skips.pop()], dim=1), temb)
                if len(level.attn):
                    h = level.attn[j](h)
            if level.upsample is not None:
                h = F.interpolate(h, size=skips[-1].shape[2:], mode="nearest")
                h = level.upsample(h)
        return self.out["conv"](F.silu(self.out["norm"](h)))


def num_params(model):
    return sum(p.numel() for p in model.parameters())
