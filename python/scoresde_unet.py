"""scoresde's U-Net (src/unet.rs) for benches/compare_unet.py: `scoresde.nets.UNet` built from
keyword arguments (unconditional score head, sinusoidal embedding). Module and parameter names
are scoresde's checkpoint names, so `state_dict()` (parameters and the `freqs` buffer) loads a
scoresde checkpoint's `ema.*` tensors with strict=True. Initialisation is PyTorch's default,
U(-1/sqrt(fan_in), 1/sqrt(fan_in)), the law of scoresde's `Init::FanIn` (other draws).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scoresde import nets  # noqa: E402
from scoresde.nets import num_params  # noqa: E402,F401


class UNet(nets.UNet):
    """`UnetConfig` fields: channels, height, width, base, mults, res_blocks, attn (heights), dropout, groups."""

    def __init__(self, channels=1, height=28, width=28, base=16, mults=(1, 2, 2), res_blocks=1, attn=(),
                 dropout=0.0, groups=8, embed_dim=32):
        arch = dict(kind="unet", channels=channels, height=height, width=width, base=base, mults=list(mults),
                    res_blocks=res_blocks, attn=list(attn), dropout=dropout, groups=groups)
        super().__init__(dict(dim=channels * height * width, embedding=dict(kind="sinusoidal", dim=embed_dim),
                              parameterization="eps", classes=0, head="score", arch=arch))

    def forward(self, x, t):
        """x: [batch, C, H, W]; t: [batch] continuous times in (0, 1]. Returns eps_hat, shaped as x."""
        return super().forward(x, t)
