//! A U-Net score network for images (Ronneberger et al. 2015, as adapted to
//! diffusion by Ho et al. 2020, appendix B): residual blocks (GroupNorm, SiLU,
//! dropout) that each receive the time embedding, down-sampling by strided
//! convolutions, up-sampling with skip connections, optional single-head
//! self-attention at chosen resolutions, an optional class embedding (with a
//! null class for classifier-free guidance), and a classifier variant (the
//! encoder half and pooled logits: a noise-conditional classifier for
//! classifier guidance, Dhariwal & Nichol 2021).
//!
//! It is built by [`crate::net::ScoreNet`] when [`crate::net::NetConfig::arch`]
//! is [`crate::net::Arch::Unet`], and shares the MLP's design: ALL trainable
//! parameters live in ONE flat f32 tensor, each weight a view into it, so
//! training (Adam, EMA, clipping, checkpoints, resume) is the same code for
//! both architectures. The time embedding `[sin(w t), cos(w t)]` is the MLP's
//! ([`crate::net::TimeEmbedding`]); here it goes through a two-layer SiLU
//! MLP to width `4 * base` and is added, projected per block, to every
//! residual block.
//!
//! **Any image size**: a level halves the resolution with a stride-2 3x3
//! convolution (padding 1), i.e. `H -> ceil(H / 2)`: 28 -> 14 -> 7 -> 4,
//! 8 -> 4 -> 2. Up-sampling is nearest-neighbour interpolation to the exact
//! size of the skip connection it meets, followed by a 3x3 convolution, so
//! 28x28 (MNIST) needs no padding and 7 -> 14 -> 28 comes back exactly.
//!
//! Layout of the flat vector (names as in checkpoints, in order):
//! `temb.0`, `temb.1` (linear), `class_emb` (`[classes + 1, 4 base]`, when
//! conditional), `conv_in`, then per level `i` its residual blocks
//! `down.{i}.res.{j}.{norm1,conv1,temb,norm2,conv2,skip}` and attention
//! `down.{i}.attn.{j}.{norm,qkv,proj}` and its `down.{i}.downsample`, the
//! middle `mid.res.0`, `mid.attn`, `mid.res.1`, then (score head)
//! `up.{i}.res.{j}...`, `up.{i}.attn.{j}...`, `up.{i}.upsample`,
//! `out.norm`, `out.conv`, or (classifier head) `head.norm`, `head.linear`.
//! Each module has `.weight` and `.bias`.

use rand::Rng as _;
use rand_distr::Uniform;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

/// The U-Net's architecture (part of [`crate::net::NetConfig`] and so of
/// every checkpoint). The image is `channels x height x width`, stored as a
/// row of `dim = channels * height * width` values in channel-major (C, H, W)
/// order, as `ndarray`/`numpy` reshape it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnetConfig {
    /// Image channels `C` (1: grey-scale).
    pub channels: usize,
    /// Image height `H`.
    pub height: usize,
    /// Image width `W`.
    pub width: usize,
    /// Channels of the first level; level `i` has `base * mults[i]`.
    pub base: usize,
    /// Channel multiplier of each level (one level per entry; every level but
    /// the last halves the resolution).
    pub mults: Vec<usize>,
    /// Residual blocks per level (the decoder has one more per level).
    pub res_blocks: usize,
    /// Feature-map heights at which self-attention follows each residual
    /// block (a subset of the levels' heights `H, ceil(H/2), ...`; the middle
    /// block has attention when the lowest height is listed).
    #[serde(default)]
    pub attn: Vec<usize>,
    /// Dropout probability inside residual blocks (while training only).
    #[serde(default)]
    pub dropout: f64,
    /// GroupNorm groups (must divide `base`).
    pub groups: usize,
}

impl UnetConfig {
    /// The default for small grey-scale or colour images on a 2-core CPU:
    /// base 16 channels, multipliers `[1, 2, 2]` (28x28: levels at 28, 14,
    /// 7), one residual block per level, no attention, no dropout, 8 groups;
    /// 0.27 M parameters with the default 32-wide time embedding.
    pub fn small(channels: usize, height: usize, width: usize) -> Self {
        Self {
            channels,
            height,
            width,
            base: 16,
            mults: vec![1, 2, 2],
            res_blocks: 1,
            attn: Vec::new(),
            dropout: 0.0,
            groups: 8,
        }
    }

    /// Pixels per image, `channels * height * width` (saturating).
    pub fn dim(&self) -> usize {
        self.channels.saturating_mul(self.height).saturating_mul(self.width)
    }

    /// The feature-map size `(height, width)` of each level: the image's,
    /// then halved (rounding up) per level.
    pub fn resolutions(&self) -> Vec<(usize, usize)> {
        let mut r = Vec::with_capacity(self.mults.len());
        let (mut h, mut w) = (self.height, self.width);
        for _ in &self.mults {
            r.push((h, w));
            (h, w) = (h.div_ceil(2), w.div_ceil(2));
        }
        r
    }

    /// Rough f32 values per sample that one forward pass keeps (activations,
    /// for memory estimates).
    pub fn activation_floats(&self) -> u64 {
        let config = self;
        let per_level: u64 = config
            .resolutions()
            .iter()
            .zip(&config.mults)
            .map(|(&(h, w), &m)| (h as u64) * (w as u64) * (config.base as u64) * (m as u64))
            .sum();
        // Per residual block about 8 tensors of its size (norms, activations,
        // convolutions, sums); encoder and decoder; plus attention's N^2.
        let blocks = 2 * config.res_blocks as u64 + 3;
        let attn: u64 = config
            .resolutions()
            .iter()
            .filter(|r| config.attn.contains(&r.0))
            .map(|&(h, w)| ((h * w) as u64).pow(2) * (2 * config.res_blocks as u64 + 2))
            .sum();
        per_level.saturating_mul(blocks * 8).saturating_add(attn.saturating_mul(2))
    }

    /// Most levels.
    pub const MAX_LEVELS: usize = 8;
    /// Largest channel multiplier.
    pub const MAX_MULT: usize = 64;
    /// Most residual blocks per level.
    pub const MAX_RES_BLOCKS: usize = 32;
    /// Most base channels.
    pub const MAX_BASE: usize = 1 << 14;
    /// Most image channels.
    pub const MAX_CHANNELS: usize = 64;
    /// Longest image side.
    pub const MAX_SIDE: usize = 1 << 13;
    /// Shortest image side.
    pub const MIN_SIDE: usize = 4;

    /// Checks every field.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the field at fault (`image shape`,
    /// `base channels`, `channel multipliers`, `res blocks`, `attention
    /// resolutions`, `dropout`, `groups`).
    pub fn validate(&self) -> Result<()> {
        let shape = format!("{}x{}x{}", self.channels, self.height, self.width);
        if !(1..=Self::MAX_CHANNELS).contains(&self.channels) {
            return Err(Error::invalid("image shape", shape, format!("1 to {} channels", Self::MAX_CHANNELS)));
        }
        for side in [self.height, self.width] {
            if !(Self::MIN_SIDE..=Self::MAX_SIDE).contains(&side) {
                return Err(Error::invalid(
                    "image shape",
                    shape,
                    format!(
                        "height and width must be {} to {} pixels (a U-Net is for images; use the MLP for other data)",
                        Self::MIN_SIDE,
                        Self::MAX_SIDE
                    ),
                ));
            }
        }
        if !(1..=Self::MAX_BASE).contains(&self.base) {
            return Err(Error::invalid("base channels", self.base, format!("must be 1 to {}", Self::MAX_BASE)));
        }
        let mults = format!("{:?}", self.mults);
        if self.mults.is_empty() || self.mults.len() > Self::MAX_LEVELS {
            return Err(Error::invalid("channel multipliers", mults, format!("1 to {} levels", Self::MAX_LEVELS)));
        }
        if self.mults.iter().any(|&m| !(1..=Self::MAX_MULT).contains(&m)) {
            return Err(Error::invalid("channel multipliers", mults, format!("each must be 1 to {}", Self::MAX_MULT)));
        }
        if !(1..=Self::MAX_RES_BLOCKS).contains(&self.res_blocks) {
            return Err(Error::invalid(
                "res blocks",
                self.res_blocks,
                format!("must be 1 to {}", Self::MAX_RES_BLOCKS),
            ));
        }
        let heights: Vec<usize> = self.resolutions().iter().map(|r| r.0).collect();
        if let Some(a) = self.attn.iter().find(|a| !heights.contains(a)) {
            return Err(Error::invalid(
                "attention resolutions",
                a,
                format!("not a feature-map height of this U-Net; its levels are {heights:?}"),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::invalid("dropout", self.dropout, "must be in [0, 1)"));
        }
        if self.groups == 0 || self.base % self.groups != 0 {
            return Err(Error::invalid(
                "groups",
                self.groups,
                format!(
                    "must divide the base channels ({}), so that every GroupNorm's channels split evenly",
                    self.base
                ),
            ));
        }
        Ok(())
    }
}

/// How a parameter is initialised.
#[derive(Debug, Clone, Copy)]
enum Init {
    /// `U(-1/sqrt(fan_in), 1/sqrt(fan_in))` (PyTorch's `nn.Linear`/`nn.Conv2d` default).
    FanIn(usize),
    /// All ones (a GroupNorm's scale).
    Ones,
    /// All zeros (a GroupNorm's shift).
    Zeros,
    /// `U(-1, 1)` (the class embedding table).
    Unit,
}

/// One named tensor of the flat vector.
#[derive(Debug, Clone)]
struct Entry {
    name: String,
    shape: Vec<i64>,
    offset: i64,
    init: Init,
}

/// Index of an [`Entry`].
type Id = usize;

/// The flat vector's entries, in order; counts with checked arithmetic.
#[derive(Debug, Default)]
struct Layout {
    entries: Vec<Entry>,
    /// Total length; `None` once it overflows.
    len: Option<i64>,
}

impl Layout {
    fn add(&mut self, name: String, shape: &[usize], init: Init) -> Id {
        let numel = shape.iter().try_fold(1i64, |acc, &d| acc.checked_mul(i64::try_from(d).ok()?));
        let offset = self.len.unwrap_or(i64::MAX);
        self.len = self.len.zip(numel).and_then(|(l, n)| l.checked_add(n));
        self.entries.push(Entry { name, shape: shape.iter().map(|&d| d as i64).collect(), offset, init });
        self.entries.len() - 1
    }

    fn numel(e: &Entry) -> i64 {
        e.shape.iter().product()
    }
}

/// A weight and a bias.
#[derive(Debug, Clone, Copy)]
struct Affine {
    weight: Id,
    bias: Id,
}

/// A 2-D convolution.
#[derive(Debug, Clone, Copy)]
struct Conv {
    p: Affine,
    stride: i64,
    pad: i64,
}

/// A residual block: `x + conv2(drop(silu(norm2(conv1(silu(norm1(x))) + W temb))))`,
/// with a 1x1 convolution on the skip path when the channels change.
#[derive(Debug, Clone, Copy)]
struct ResBlock {
    norm1: Affine,
    conv1: Conv,
    temb: Affine,
    norm2: Affine,
    conv2: Conv,
    skip: Option<Conv>,
}

/// Single-head self-attention over the pixels: `x + proj(attend(qkv(norm(x))))`.
#[derive(Debug, Clone, Copy)]
struct Attention {
    norm: Affine,
    qkv: Conv,
    proj: Conv,
}

/// A residual block, optionally followed by attention.
type Stage = (ResBlock, Option<Attention>);

/// One level of the encoder or decoder.
#[derive(Debug, Clone)]
struct Level {
    stages: Vec<Stage>,
    /// Downsampling (encoder) or upsampling (decoder) convolution.
    resample: Option<Conv>,
}

/// What follows the middle block.
#[derive(Debug, Clone)]
enum Tail {
    /// The decoder and the output convolution.
    Decoder { up: Vec<Level>, norm: Affine, conv: Conv },
    /// Pooled logits.
    Classifier { norm: Affine, linear: Affine },
}

/// The U-Net's layout over a flat parameter vector. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct UNet {
    config: UnetConfig,
    layout: Layout,
    temb: [Affine; 2],
    class_emb: Option<Id>,
    conv_in: Conv,
    down: Vec<Level>,
    mid: (ResBlock, Option<Attention>, ResBlock),
    tail: Tail,
}

/// Builds the layout: the modules and their entries, in order.
struct Builder<'a> {
    layout: &'a mut Layout,
}

impl Builder<'_> {
    fn affine(&mut self, name: &str, weight: &[usize], bias: usize, init: Init, bias_init: Init) -> Affine {
        Affine {
            weight: self.layout.add(format!("{name}.weight"), weight, init),
            bias: self.layout.add(format!("{name}.bias"), &[bias], bias_init),
        }
    }

    fn linear(&mut self, name: &str, fan_in: usize, fan_out: usize) -> Affine {
        self.affine(name, &[fan_out, fan_in], fan_out, Init::FanIn(fan_in), Init::FanIn(fan_in))
    }

    fn norm(&mut self, name: &str, channels: usize) -> Affine {
        self.affine(name, &[channels], channels, Init::Ones, Init::Zeros)
    }

    fn conv(&mut self, name: &str, cin: usize, cout: usize, k: usize, stride: i64) -> Conv {
        let fan_in = cin.saturating_mul(k * k);
        let p = self.affine(name, &[cout, cin, k, k], cout, Init::FanIn(fan_in), Init::FanIn(fan_in));
        Conv { p, stride, pad: (k / 2) as i64 }
    }

    fn res(&mut self, name: &str, cin: usize, cout: usize, temb: usize) -> ResBlock {
        ResBlock {
            norm1: self.norm(&format!("{name}.norm1"), cin),
            conv1: self.conv(&format!("{name}.conv1"), cin, cout, 3, 1),
            temb: self.linear(&format!("{name}.temb"), temb, cout),
            norm2: self.norm(&format!("{name}.norm2"), cout),
            conv2: self.conv(&format!("{name}.conv2"), cout, cout, 3, 1),
            skip: (cin != cout).then(|| self.conv(&format!("{name}.skip"), cin, cout, 1, 1)),
        }
    }

    fn attention(&mut self, name: &str, ch: usize) -> Attention {
        Attention {
            norm: self.norm(&format!("{name}.norm"), ch),
            qkv: self.conv(&format!("{name}.qkv"), ch, 3 * ch, 1, 1),
            proj: self.conv(&format!("{name}.proj"), ch, ch, 1, 1),
        }
    }
}

impl UNet {
    /// The layout of `config` for `classes` classes, its embedding of width
    /// `embed_dim`, as a score (`classifier == false`: a null class is added
    /// when `classes > 0`) or a classifier. Sizes are assumed validated
    /// ([`UnetConfig::validate`]); the length saturates rather than overflows.
    pub(crate) fn new(config: UnetConfig, embed_dim: usize, classes: usize, classifier: bool) -> Self {
        let mut layout = Layout { entries: Vec::new(), len: Some(0) };
        let mut b = Builder { layout: &mut layout };
        let base = config.base;
        let temb_ch = 4 * base;
        let temb = [b.linear("temb.0", embed_dim, temb_ch), b.linear("temb.1", temb_ch, temb_ch)];
        let class_emb = (classes > 0 && !classifier)
            .then(|| b.layout.add("class_emb.weight".into(), &[classes + 1, temb_ch], Init::Unit));
        let conv_in = b.conv("conv_in", config.channels, base, 3, 1);
        let heights: Vec<usize> = config.resolutions().iter().map(|r| r.0).collect();
        let attn_at = |level: usize| heights.get(level).is_some_and(|h| config.attn.contains(h));
        let levels = config.mults.len();
        let mut skips = vec![base];
        let mut ch = base;
        let mut down = Vec::with_capacity(levels);
        for (i, &m) in config.mults.iter().enumerate() {
            let out = base * m;
            let mut stages = Vec::with_capacity(config.res_blocks);
            for j in 0..config.res_blocks {
                let res = b.res(&format!("down.{i}.res.{j}"), ch, out, temb_ch);
                let attn = attn_at(i).then(|| b.attention(&format!("down.{i}.attn.{j}"), out));
                stages.push((res, attn));
                ch = out;
                skips.push(ch);
            }
            let resample = (i + 1 < levels).then(|| b.conv(&format!("down.{i}.downsample"), ch, ch, 3, 2));
            if resample.is_some() {
                skips.push(ch);
            }
            down.push(Level { stages, resample });
        }
        let mid = (
            b.res("mid.res.0", ch, ch, temb_ch),
            attn_at(levels.saturating_sub(1)).then(|| b.attention("mid.attn", ch)),
            b.res("mid.res.1", ch, ch, temb_ch),
        );
        let tail = if classifier {
            Tail::Classifier { norm: b.norm("head.norm", ch), linear: b.linear("head.linear", ch, classes) }
        } else {
            let mut up = Vec::with_capacity(levels);
            for (i, &m) in config.mults.iter().enumerate().rev() {
                let out = base * m;
                let mut stages = Vec::with_capacity(config.res_blocks + 1);
                for j in 0..=config.res_blocks {
                    let skip = skips.pop().unwrap_or(0);
                    let res = b.res(&format!("up.{i}.res.{j}"), ch + skip, out, temb_ch);
                    let attn = attn_at(i).then(|| b.attention(&format!("up.{i}.attn.{j}"), out));
                    stages.push((res, attn));
                    ch = out;
                }
                let resample = (i > 0).then(|| b.conv(&format!("up.{i}.upsample"), ch, ch, 3, 1));
                up.push(Level { stages, resample });
            }
            Tail::Decoder { up, norm: b.norm("out.norm", ch), conv: b.conv("out.conv", ch, config.channels, 3, 1) }
        };
        Self { config, layout, temb, class_emb, conv_in, down, mid, tail }
    }

    /// Number of trainable parameters (`i64::MAX` when it overflows).
    pub(crate) fn num_params(&self) -> i64 {
        self.layout.len.unwrap_or(i64::MAX)
    }

    /// A fresh flat vector drawn on the host from `seed`'s stream (see
    /// [`Init`]); the same on every device.
    pub(crate) fn init_params(&self, seed: u64, device: Device) -> Result<Tensor> {
        let mut rng = crate::rng::rng(seed, crate::rng::INIT, 0);
        let mut values = Vec::with_capacity(self.num_params().max(0) as usize);
        for e in &self.layout.entries {
            let n = Layout::numel(e) as usize;
            match e.init {
                Init::FanIn(fan_in) => {
                    let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
                    let u = Uniform::new(-bound, bound);
                    values.extend((0..n).map(|_| rng.sample(u)));
                }
                Init::Unit => {
                    let u = Uniform::new(-1.0f32, 1.0);
                    values.extend((0..n).map(|_| rng.sample(u)));
                }
                Init::Ones => values.extend(std::iter::repeat(1.0f32).take(n)),
                Init::Zeros => values.extend(std::iter::repeat(0.0f32).take(n)),
            }
        }
        crate::rng::to_device(&values, &[self.num_params()], Kind::Float, device)
    }

    fn view(&self, params: &Tensor, id: Id) -> Tensor {
        let e = &self.layout.entries[id];
        params.narrow(0, e.offset, Layout::numel(e)).view(e.shape.as_slice())
    }

    /// Named views of a flat vector (for checkpoints).
    pub(crate) fn named(&self, params: &Tensor) -> Vec<(String, Tensor)> {
        (0..self.layout.entries.len()).map(|id| (self.layout.entries[id].name.clone(), self.view(params, id))).collect()
    }

    /// The flat vector from named tensors.
    pub(crate) fn flatten_named(&self, find: impl Fn(&str) -> Option<Tensor>, device: Device) -> Result<Tensor> {
        let mut parts = Vec::with_capacity(self.layout.entries.len());
        for e in &self.layout.entries {
            let t = find(&e.name).ok_or_else(|| Error::invalid("checkpoint tensor", &e.name, "missing"))?;
            if t.size() != e.shape {
                return Err(Error::invalid(
                    "checkpoint tensor",
                    &e.name,
                    format!("has shape {:?}, the architecture needs {:?}", t.size(), e.shape),
                ));
            }
            parts.push(t.to_kind(Kind::Float).reshape([-1]));
        }
        Ok(Tensor::f_cat(&parts, 0)?.f_to_device(device)?)
    }

    /// The accepted input shapes' batch size: `[batch, C*H*W]` or `[batch, C, H, W]`.
    pub(crate) fn batch_of(&self, x: &Tensor) -> Result<i64> {
        let c = &self.config;
        let size = x.size();
        let image = [c.channels as i64, c.height as i64, c.width as i64];
        match size.as_slice() {
            [b, d] if *d == c.dim() as i64 => Ok(*b),
            [b, rest @ ..] if rest == image.as_slice() => Ok(*b),
            _ => Err(Error::invalid(
                "input",
                format!("shape {size:?}"),
                format!("the U-Net takes [batch, {}] or [batch, {}, {}, {}]", c.dim(), c.channels, c.height, c.width),
            )),
        }
    }

    /// Every entry's view of `params`, from ONE `split_with_sizes`: its
    /// backward writes the whole gradient with one concatenation, where a
    /// `narrow` per entry would add one zero-padded, full-length gradient per
    /// entry (hundreds of them) into the flat vector's gradient.
    fn split(&self, params: &Tensor) -> Result<Vec<Tensor>> {
        let sizes: Vec<i64> = self.layout.entries.iter().map(Layout::numel).collect();
        let parts = params.f_split_with_sizes(sizes.as_slice(), 0)?;
        parts.iter().zip(&self.layout.entries).map(|(t, e)| Ok(t.f_view(e.shape.as_slice())?)).collect()
    }

    fn linear(&self, p: &[Tensor], a: Affine, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_linear(&p[a.weight], Some(&p[a.bias]))?)
    }

    fn conv(&self, p: &[Tensor], c: Conv, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_conv2d(&p[c.p.weight], Some(&p[c.p.bias]), [c.stride], [c.pad], [1], 1)?)
    }

    fn norm(&self, p: &[Tensor], a: Affine, x: &Tensor) -> Result<Tensor> {
        let (w, b) = (&p[a.weight], &p[a.bias]);
        Ok(x.f_group_norm(self.config.groups as i64, Some(w), Some(b), 1e-5, false)?)
    }

    /// `block`-th residual block; `dropout`: the forward pass's dropout seed (training).
    fn res(
        &self,
        p: &[Tensor],
        r: &ResBlock,
        x: &Tensor,
        temb: &Tensor,
        dropout: Option<(u64, u64)>,
    ) -> Result<Tensor> {
        let h = self.conv(p, r.conv1, &self.norm(p, r.norm1, x)?.f_silu()?)?;
        let h = h.f_add(&self.linear(p, r.temb, temb)?.f_unsqueeze(-1)?.f_unsqueeze(-1)?)?;
        let mut h = self.norm(p, r.norm2, &h)?.f_silu()?;
        let rate = self.config.dropout;
        if let (Some((seed, block)), true) = (dropout, rate > 0.0) {
            h = h.f_mul(&crate::rng::dropout_mask(&h.size(), rate, crate::rng::mix(seed, block, 0), h.device())?)?;
        }
        let h = self.conv(p, r.conv2, &h)?;
        let skip = match r.skip {
            Some(c) => self.conv(p, c, x)?,
            None => x.shallow_clone(),
        };
        Ok(skip.f_add(&h)?)
    }

    fn attention(&self, p: &[Tensor], a: &Attention, x: &Tensor) -> Result<Tensor> {
        let size = x.size();
        let (b, c) = (size[0], size[1]);
        let qkv = self.conv(p, a.qkv, &self.norm(p, a.norm, x)?)?.f_reshape([b, 3 * c, -1])?;
        let parts = qkv.f_split(c, 1)?;
        let (q, k, v) = (&parts[0], &parts[1], &parts[2]);
        // w[b, i, j] = softmax_j(q_i . k_j / sqrt(c)); out[b, :, i] = sum_j w[b, i, j] v[b, :, j].
        let w = q.f_transpose(1, 2)?.f_bmm(k)?.f_mul_scalar(1.0 / (c as f64).sqrt())?.f_softmax(-1, Kind::Float)?;
        let out = v.f_bmm(&w.f_transpose(1, 2)?)?.f_reshape(size.as_slice())?;
        Ok(x.f_add(&self.conv(p, a.proj, &out)?)?)
    }

    fn stage(&self, p: &[Tensor], s: &Stage, h: &Tensor, temb: &Tensor, drop: Option<(u64, u64)>) -> Result<Tensor> {
        let h = self.res(p, &s.0, h, temb, drop)?;
        match &s.1 {
            Some(a) => self.attention(p, a, &h),
            None => Ok(h),
        }
    }

    /// The output (same shape as `x`; `[batch, classes]` logits for a
    /// classifier) for an input `x` (`[batch, C*H*W]` or `[batch, C, H, W]`),
    /// the time embedding `emb` (`[batch, embed_dim]`), int64 `labels` in
    /// `0..=classes` (`classes`: the null class) for a conditional score, and
    /// `dropout_seed` to apply dropout (training).
    pub(crate) fn forward(
        &self,
        params: &Tensor,
        x: &Tensor,
        emb: &Tensor,
        labels: Option<&Tensor>,
        dropout_seed: Option<u64>,
    ) -> Result<Tensor> {
        let batch = self.batch_of(x)?;
        let parts = self.split(params)?;
        let p = parts.as_slice();
        let c = &self.config;
        let image = x.f_reshape([batch, c.channels as i64, c.height as i64, c.width as i64])?;
        let mut temb = self.linear(p, self.temb[1], &self.linear(p, self.temb[0], emb)?.f_silu()?)?;
        if let (Some(table), Some(y)) = (self.class_emb, labels) {
            temb = temb.f_add(&p[table].f_index_select(0, y)?)?;
        }
        let temb = temb.f_silu()?;
        let mut block = 0u64;
        let mut drop = || {
            block += 1;
            dropout_seed.map(|s| (s, block))
        };
        let mut h = self.conv(p, self.conv_in, &image)?;
        let mut skips = vec![h.shallow_clone()];
        for level in &self.down {
            for s in &level.stages {
                h = self.stage(p, s, &h, &temb, drop())?;
                skips.push(h.shallow_clone());
            }
            if let Some(conv) = level.resample {
                h = self.conv(p, conv, &h)?;
                skips.push(h.shallow_clone());
            }
        }
        h = self.res(p, &self.mid.0, &h, &temb, drop())?;
        if let Some(a) = &self.mid.1 {
            h = self.attention(p, a, &h)?;
        }
        h = self.res(p, &self.mid.2, &h, &temb, drop())?;
        match &self.tail {
            Tail::Classifier { norm, linear } => {
                let pooled = self.norm(p, *norm, &h)?.f_silu()?.f_mean_dim([2i64, 3].as_slice(), false, Kind::Float)?;
                self.linear(p, *linear, &pooled)
            }
            Tail::Decoder { up, norm, conv } => {
                for level in up {
                    for s in &level.stages {
                        let skip = skips.pop().ok_or_else(|| Error::invalid("U-Net", "skips", "ran out"))?;
                        h = self.stage(p, s, &Tensor::f_cat(&[&h, &skip], 1)?, &temb, drop())?;
                    }
                    if let Some(conv) = level.resample {
                        let target = skips.last().map(|s| s.size()).unwrap_or_default();
                        h = h.f_upsample_nearest2d(&target[2..], None, None)?;
                        h = self.conv(p, conv, &h)?;
                    }
                }
                let out = self.conv(p, *conv, &self.norm(p, *norm, &h)?.f_silu()?)?;
                Ok(out.f_reshape(x.size().as_slice())?)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{Head, NetConfig, Parameterization, ScoreNet};

    fn tiny(c: usize, h: usize, w: usize) -> UnetConfig {
        UnetConfig { base: 8, mults: vec![1, 2], groups: 4, ..UnetConfig::small(c, h, w) }
    }

    fn net(config: NetConfig) -> ScoreNet {
        ScoreNet::new(config, Device::Cpu, 0).unwrap()
    }

    fn times(b: i64, t: f64) -> Tensor {
        Tensor::full([b], t, (Kind::Float, Device::Cpu))
    }

    #[test]
    fn forward_shapes_for_8x8_and_28x28_flat_and_4d() {
        for (shape, attn) in [((1, 8, 8), vec![4]), ((1, 28, 28), vec![14]), ((3, 6, 5), vec![])] {
            let u = UnetConfig { attn, ..tiny(shape.0, shape.1, shape.2) };
            let n = net(NetConfig::unet(u.clone()));
            let p = n.init_params(1).unwrap();
            assert_eq!(p.size(), [n.num_params()]);
            assert_eq!(n.num_params() as usize, n.config().num_params(), "the config counts what the layout holds");
            let total: i64 = n.named(&p).iter().map(|(_, t)| t.numel() as i64).sum();
            assert_eq!(total, n.num_params(), "named views cover the flat vector");
            let d = u.dim() as i64;
            let x = Tensor::randn([3, d], (Kind::Float, Device::Cpu));
            let y = n.forward(&p, &x, &times(3, 0.4)).unwrap();
            assert_eq!(y.size(), [3, d]);
            assert_eq!(y.isfinite().all().int64_value(&[]), 1);
            let x4 = x.view([3, shape.0 as i64, shape.1 as i64, shape.2 as i64]);
            let y4 = n.forward(&p, &x4, &times(3, 0.4)).unwrap();
            assert_eq!(y4.size(), x4.size(), "a [B, C, H, W] input gives a [B, C, H, W] output");
            assert!(y4.reshape([3, d]).allclose(&y, 1e-5, 1e-6, false));
            // Samples are independent: row 0 alone gives row 0.
            let y0 = n.forward(&p, &x.narrow(0, 0, 1), &times(1, 0.4)).unwrap();
            assert!(y0.allclose(&y.narrow(0, 0, 1), 1e-4, 1e-5, false));
            assert!(!n.forward(&p, &x, &times(3, 0.9)).unwrap().allclose(&y, 1e-3, 1e-3, false), "depends on t");
            assert!(n.forward(&p, &x.narrow(1, 0, d - 1), &times(3, 0.4)).is_err());
            assert!(n.forward(&p.narrow(0, 0, 10), &x, &times(3, 0.4)).is_err());
        }
    }

    #[test]
    fn every_parameterization_gives_a_score_of_the_input_shape() {
        use crate::model::{NeuralScore, SdeSpec};
        use crate::solvers::Score;
        for parameterization in [
            Parameterization::Eps,
            Parameterization::Score,
            Parameterization::X0,
            Parameterization::V,
            Parameterization::Flow,
        ] {
            let n = net(NetConfig { parameterization, ..NetConfig::unet(tiny(1, 8, 8)) });
            let p = n.init_params(2).unwrap();
            let x = Tensor::randn([2, 1, 8, 8], (Kind::Float, Device::Cpu));
            let t = 0.3;
            let raw = n.forward(&p, &x, &times(2, t)).unwrap();
            let sde = SdeSpec::default().build().unwrap();
            let (a, sigma, da, ds) = (sde.alpha(t), sde.sigma(t), sde.alpha_dot(t), sde.sigma_dot(t));
            let score = NeuralScore::new(n, p, sde).unwrap();
            let s = Score::<Tensor>::score(&score, &x, t).unwrap();
            assert_eq!(s.size(), [2, 1, 8, 8]);
            // The closed forms of Parameterization::eps_hat, written out.
            let eps = match parameterization {
                Parameterization::Eps => raw.copy(),
                Parameterization::Score => &raw * -sigma,
                Parameterization::X0 => (&x - &raw * a) / sigma,
                Parameterization::V => (&x * sigma + &raw * a) / (a * a + sigma * sigma),
                // x = a x0 + sigma eps, v = a' x0 + sigma' eps solved for eps.
                Parameterization::Flow => (&raw * a - &x * da) / (a * ds - sigma * da),
            };
            assert!(s.allclose(&(eps * (-1.0 / sigma)), 1e-4, 1e-5, false), "{parameterization:?}");
        }
    }

    #[test]
    fn conditional_null_class_and_classifier() {
        let n = net(NetConfig { classes: 3, ..NetConfig::unet(tiny(1, 8, 8)) });
        let p = n.init_params(0).unwrap();
        let x = Tensor::randn([4, 64], (Kind::Float, Device::Cpu));
        let t = times(4, 0.5);
        let null = n.forward(&p, &x, &t).unwrap();
        let explicit = n.forward_labelled(&p, &x, &t, Some(&Tensor::from_slice(&[3i64, 3, 3, 3]))).unwrap();
        assert!(explicit.equal(&null), "None is the null class, index C");
        let labelled = n.forward_labelled(&p, &x, &t, Some(&Tensor::from_slice(&[0i64, 1, 2, 0]))).unwrap();
        assert!(!labelled.allclose(&null, 1e-4, 1e-4, false), "the class changes the output");
        assert!(n.forward_labelled(&p, &x, &t, Some(&Tensor::from_slice(&[0i64, 1, 2, 4]))).is_err());
        assert!(n.forward_labelled(&p, &x, &t, Some(&Tensor::from_slice(&[0i64, -1, 2, 0]))).is_err());
        let at = tch::no_grad(|| n.forward_at_class(&p, &x, 0.5, Some(1))).unwrap();
        let want = n.forward_labelled(&p, &x, &t, Some(&Tensor::from_slice(&[1i64; 4]))).unwrap();
        assert!(at.allclose(&want, 1e-5, 1e-6, false));
        assert!(n.forward_at_class(&p, &x, 0.5, Some(3)).is_err(), "3 is the null label's slot");

        let k = net(NetConfig { classes: 5, head: Head::Classifier, ..NetConfig::unet(tiny(1, 8, 8)) });
        let pk = k.init_params(0).unwrap();
        assert_eq!(k.forward(&pk, &x, &t).unwrap().size(), [4, 5]);
        assert_eq!(k.forward(&pk, &x.view([4, 1, 8, 8]), &t).unwrap().size(), [4, 5]);
        assert!(k.num_params() < n.num_params(), "the classifier is the encoder half");
    }

    #[test]
    fn dropout_only_in_training_and_fixed_by_its_seed() {
        let n = net(NetConfig::unet(UnetConfig { dropout: 0.3, ..tiny(1, 8, 8) }));
        let p = n.init_params(0).unwrap();
        let x = Tensor::randn([2, 64], (Kind::Float, Device::Cpu));
        let t = times(2, 0.5);
        let eval = n.forward(&p, &x, &t).unwrap();
        assert!(n.forward(&p, &x, &t).unwrap().equal(&eval), "no dropout outside training");
        let a = n.forward_train(&p, &x, &t, None, Some(1)).unwrap();
        assert!(n.forward_train(&p, &x, &t, None, Some(1)).unwrap().equal(&a));
        assert!(!a.allclose(&eval, 1e-4, 1e-4, false));
        assert!(!n.forward_train(&p, &x, &t, None, Some(2)).unwrap().allclose(&a, 1e-4, 1e-4, false));
    }

    #[test]
    fn invalid_configs_name_the_field() {
        let check = |u: UnetConfig, name: &str| {
            let err = ScoreNet::new(NetConfig::unet(u), Device::Cpu, 0).unwrap_err().to_string();
            assert!(err.contains(name), "{err}");
        };
        check(UnetConfig { mults: vec![], ..tiny(1, 8, 8) }, "channel multipliers");
        check(UnetConfig { mults: vec![1, 0], ..tiny(1, 8, 8) }, "channel multipliers");
        check(UnetConfig { attn: vec![3], ..tiny(1, 8, 8) }, "attention resolutions");
        check(UnetConfig { groups: 3, ..tiny(1, 8, 8) }, "groups");
        check(UnetConfig { dropout: 1.0, ..tiny(1, 8, 8) }, "dropout");
        check(UnetConfig { res_blocks: 0, ..tiny(1, 8, 8) }, "res blocks");
        check(tiny(1, 2, 1), "image shape");
        check(UnetConfig { base: 0, ..tiny(1, 8, 8) }, "base channels");
        let wrong_dim = NetConfig { dim: 63, ..NetConfig::unet(tiny(1, 8, 8)) };
        assert!(wrong_dim.validate().unwrap_err().to_string().contains("image shape"));
        assert_eq!(
            NetConfig { dim: 63, ..NetConfig::unet(UnetConfig { mults: vec![], ..tiny(1, 8, 8) }) }.num_params(),
            usize::MAX
        );
    }

    #[test]
    fn mlp_configs_without_arch_still_read() {
        let mut json = serde_json::to_value(NetConfig::mlp(2)).unwrap();
        json.as_object_mut().unwrap().remove("arch");
        let back: NetConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, NetConfig::mlp(2));
        let u = NetConfig::unet(tiny(1, 8, 8));
        let back: NetConfig = serde_json::from_str(&serde_json::to_string(&u).unwrap()).unwrap();
        assert_eq!(back, u);
    }
}
