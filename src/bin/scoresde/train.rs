//! `scoresde train`: denoising score matching on a toy set, an image set or a
//! .npy file; `--conditional` for a class-conditional score (classifier-free
//! guidance), and `scoresde train-classifier` for a noise-conditional
//! classifier (classifier guidance), both on labelled data: the toy sets with
//! classes, mnist, digits, or a .npy file with `--labels`.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::{bail, Context as _};
use ndarray::Array2;
use scoresde::checkpoint::{self, DataInfo};
use scoresde::data::{save_npy, split_indices, split_sizes, DataSource, Scaling, MIN_HELDOUT_ROWS, MIN_TRAIN_ROWS};
use scoresde::model::SdeSpec;
use scoresde::net::{Activation, Arch, Head, NetConfig, Parameterization, TimeEmbedding};
use scoresde::train::{Outcome, TrainConfig, Trainer, Weighting};
use scoresde::unet::UnetConfig;

use crate::common::{self, CtrlC, Status};
use scoresde::checkpoint::Meta;
use scoresde::fsutil::FolderLock;

/// `--embedding`: which time embedding.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingKind {
    Sinusoidal,
    Fourier,
}

/// `--net`: which architecture.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetKind {
    /// The MLP (tabular and 2-D data).
    Mlp,
    /// The U-Net (images; see --image-shape).
    Unet,
}

/// `--process`: the forward process.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    /// The VP-SDE with linear beta(t) (--beta-min, --beta-max).
    Vp,
    /// Rectified flow, x_t = (1 - t) x0 + t z on [0, --flow-t-max], with a velocity network.
    Flow,
}

/// Options of `scoresde train` (also used by `demo`).
#[derive(clap::Args, Debug, Clone)]
pub struct TrainArgs {
    /// A toy set (eight-gaussians, swiss-roll, two-moons, checkerboard, rings,
    /// mixture), an image set the set-up fetches (mnist: 5,000 28x28 digits;
    /// digits: 1,797 8x8 digits; both labelled 0-9), or a .npy file of rows
    /// [n, d] or images [n, H, W] / [n, C, H, W] (uint8, float32, float64).
    /// Images are scaled from their pixel range to [-1, 1], rows standardised.
    #[arg(long, default_value = "eight-gaussians")]
    pub data: String,
    /// Labels of a .npy --data file, for --conditional and train-classifier:
    /// a .npy file of n integers 0..K-1 (int64, int32, uint8, or integral floats).
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// Samples drawn from a toy set (image sets and .npy files are used whole). The split must
    /// leave at least 10 training and 2 held-out rows.
    #[arg(long, default_value_t = 20_000)]
    pub n: usize,
    /// Fraction of the data held out for evaluation (saved as OUT/heldout.npy).
    #[arg(long, default_value_t = 0.1)]
    pub holdout: f64,
    /// Total optimisation steps [default: 4000, or the checkpoint's with --resume].
    #[arg(long)]
    pub steps: Option<u64>,
    /// Batch size [default: 512 with --net mlp, 128 with --net unet]: at most
    /// the number of training rows (a larger value is lowered to it, with a
    /// note), and a training step must fit in half of the machine's memory on the CPU.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Peak Adam learning rate.
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f64,
    /// Linear learning-rate warm-up steps.
    #[arg(long, default_value_t = 100)]
    pub warmup: u64,
    /// Global gradient-norm clip (0: off).
    #[arg(long, default_value_t = 1.0)]
    pub grad_clip: f64,
    /// EMA decay of the weights used for sampling.
    #[arg(long, default_value_t = 0.999)]
    pub ema: f64,
    /// Loss weighting: eps (sigma^2) or likelihood (g^2).
    #[arg(long, value_enum, default_value_t = Weighting::Eps)]
    pub weighting: Weighting,
    /// The forward process: vp (the VP-SDE) or flow (rectified flow, x_t = (1 - t) x0 + t z,
    /// trained by regressing the velocity z - x0). Stored in the checkpoint: sample,
    /// eval and plot use it without being told.
    #[arg(long, value_enum, default_value_t = Process::Vp)]
    pub process: Process,
    /// With --process flow: the end of the time range, in (0.001, 1). a(1) = 0 makes the
    /// drift of the equivalent SDE infinite, so sampling starts at t_max, where a = 1 - t_max.
    #[arg(long, default_value_t = scoresde::solvers::interpolant::FLOW_T_MAX)]
    pub flow_t_max: f64,
    /// What the network predicts [default: eps; flow (the velocity dx_t/dt) with --process flow].
    #[arg(long = "param", value_enum, default_value_t = Parameterization::Eps)]
    pub parameterization: Parameterization,
    /// Network: mlp (tabular data) or unet (images of --image-shape).
    #[arg(long, value_enum, default_value_t = NetKind::Mlp)]
    pub net: NetKind,
    /// With --net unet: the shape C,H,W of one sample (the data's columns are
    /// its pixels in C, H, W order) [default: 1,S,S when the data have S*S columns].
    #[arg(long, value_delimiter = ',', value_name = "C,H,W")]
    pub image_shape: Vec<usize>,
    /// With --net unet: channels of the first level.
    #[arg(long, default_value_t = 16)]
    pub base_channels: usize,
    /// With --net unet: channel multiplier per level (every level but the last halves the resolution).
    #[arg(long, value_delimiter = ',', default_value = "1,2,2")]
    pub channel_mults: Vec<usize>,
    /// With --net unet: residual blocks per level.
    #[arg(long, default_value_t = 1)]
    pub res_blocks: usize,
    /// With --net unet: feature-map heights with self-attention (e.g. 7 for
    /// 28x28 images with three levels: 28, 14, 7) [default: none].
    #[arg(long, value_delimiter = ',', value_name = "HEIGHTS")]
    pub attn: Vec<usize>,
    /// With --net unet: dropout probability in the residual blocks.
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f64,
    /// With --net unet: GroupNorm groups (must divide --base-channels).
    #[arg(long, default_value_t = 8)]
    pub groups: usize,
    /// Hidden width (--net mlp).
    #[arg(long, default_value_t = 128)]
    pub width: usize,
    /// Hidden layers (--net mlp).
    #[arg(long, default_value_t = 3)]
    pub depth: usize,
    /// Hidden non-linearity (--net mlp).
    #[arg(long, value_enum, default_value_t = Activation::Silu)]
    pub activation: Activation,
    /// Time embedding.
    #[arg(long, value_enum, default_value_t = EmbeddingKind::Sinusoidal)]
    pub embedding: EmbeddingKind,
    /// Time-embedding width (even).
    #[arg(long, default_value_t = 32)]
    pub embed_dim: usize,
    /// Standard deviation of random Fourier frequencies.
    #[arg(long, default_value_t = 16.0)]
    pub fourier_scale: f64,
    /// VP-SDE beta(0).
    #[arg(long, default_value_t = 0.1)]
    pub beta_min: f64,
    /// VP-SDE beta(1).
    #[arg(long, default_value_t = 20.0)]
    pub beta_max: f64,
    /// Seed of the data, the split, the initialisation and every training draw.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Output folder (checkpoint OUT/model.safetensors + OUT/model.json, loss curve, held-out data).
    #[arg(long, default_value = "out/train")]
    pub out: PathBuf,
    /// Continue from OUT/model (same --data, --n and --seed).
    #[arg(long)]
    pub resume: bool,
    /// Start over even if OUT/model exists (it is replaced at the first save).
    #[arg(long, conflicts_with = "resume")]
    pub force: bool,
    /// Save a checkpoint every this many steps (0: only at the end or on Ctrl-C).
    #[arg(long, default_value_t = 500)]
    pub save_every: u64,
    /// Log the mean loss every this many steps.
    #[arg(long, default_value_t = 50)]
    pub log_every: u64,
    /// Write the training rows (after the --holdout split, unscaled) to this .npy file and
    /// exit without training; with --conditional also their labels to FILE's stem +
    /// `-labels.npy`. For other trainers (python/scoresde/train_ddp.py) on the same rows.
    #[arg(long, value_name = "FILE", conflicts_with = "resume")]
    pub save_train: Option<PathBuf>,
    /// Train a class-conditional score for classifier-free guidance (labelled
    /// data: eight-gaussians and mixture, class = component; mnist, digits;
    /// a .npy file with --labels).
    #[arg(long)]
    pub conditional: bool,
    /// With --conditional: probability of training on the null label instead of the class.
    #[arg(long, default_value_t = 0.1)]
    pub label_dropout: f64,
    /// Train a noise-conditional classifier instead (set by `train-classifier`).
    #[arg(skip)]
    pub classifier: bool,
    /// The ids of the options given on the command line (set by `main`), to
    /// tell them from defaults: with --resume they must agree with the checkpoint.
    #[arg(skip)]
    pub given: Vec<String>,
}

/// What a training run produced.
pub struct Trained {
    /// The trainer at the end of the run (weights, EMA, loss log).
    pub trainer: Trainer,
    /// The data scaling the network sees.
    pub scaling: Scaling,
    /// The held-out rows, in data coordinates.
    pub held_out: Array2<f64>,
    /// The checkpoint stem written.
    pub checkpoint: PathBuf,
    /// Wall-clock seconds of the optimisation.
    pub seconds: f64,
    /// Steps taken by this call (fewer than the total when resumed).
    pub steps_run: u64,
    /// Whether the run finished or was stopped by Ctrl-C.
    pub outcome: Outcome,
    /// The run folder, held for as long as this lives (`demo` goes on writing there).
    _lock: FolderLock,
}

impl Trained {
    /// How the command ended.
    pub fn status(&self) -> Status {
        match self.outcome {
            Outcome::Finished => Status::Done,
            Outcome::Interrupted => Status::Interrupted,
        }
    }
}

/// Options that only the U-Net reads, and only the MLP reads (clap ids, flags).
const UNET_OPTIONS: [(&str, &str); 7] = [
    ("image_shape", "--image-shape"),
    ("base_channels", "--base-channels"),
    ("channel_mults", "--channel-mults"),
    ("res_blocks", "--res-blocks"),
    ("attn", "--attn"),
    ("dropout", "--dropout"),
    ("groups", "--groups"),
];
const MLP_OPTIONS: [(&str, &str); 3] = [("width", "--width"), ("depth", "--depth"), ("activation", "--activation")];

/// The image shape `[C, H, W]` of `dim`-column data for `--net unet`: from
/// `--image-shape`, else from `data_shape` (the data set's own per-sample
/// shape, when it has one), else `[1, S, S]` when `dim = S * S`.
pub fn image_shape(a: &TrainArgs, dim: usize, data_shape: Option<&[usize]>) -> anyhow::Result<[usize; 3]> {
    let shape: Vec<usize> = if !a.image_shape.is_empty() {
        a.image_shape.clone()
    } else if let Some(s) = data_shape {
        if s.len() == 2 {
            vec![1, s[0], s[1]]
        } else {
            s.to_vec()
        }
    } else {
        let side = (dim as f64).sqrt().round() as usize;
        if side * side != dim {
            bail!(
                "--net unet is for images: --data {} has {dim} columns per sample, not a square image; pass --image-shape C,H,W (C*H*W = {dim}) or use --net mlp",
                a.data
            );
        }
        vec![1, side, side]
    };
    let [c, h, w] = shape[..] else {
        bail!("--image-shape {:?}: give three sizes C,H,W", shape);
    };
    if c.checked_mul(h).and_then(|p| p.checked_mul(w)) != Some(dim) {
        bail!(
            "--image-shape {c},{h},{w} has {} values per sample, but --data {} has {dim} columns: the U-Net is for images whose pixels are the columns",
            c.saturating_mul(h).saturating_mul(w),
            a.data
        );
    }
    Ok([c, h, w])
}

/// The network of `train`'s options for `dim`-dimensional data and
/// `classes` classes; a U-Net's image shape as [`image_shape`] says.
pub fn net_config(
    a: &TrainArgs,
    dim: usize,
    classes: usize,
    data_shape: Option<&[usize]>,
) -> anyhow::Result<NetConfig> {
    let (wrong, kind) = match a.net {
        NetKind::Mlp => (&UNET_OPTIONS[..], "mlp"),
        NetKind::Unet => (&MLP_OPTIONS[..], "unet"),
    };
    if let Some((_, flag)) = wrong.iter().find(|(id, _)| a.given.iter().any(|g| g == id)) {
        bail!("{flag} does not apply to --net {kind}: leave it out, or pick the other --net");
    }
    let embedding = match a.embedding {
        EmbeddingKind::Sinusoidal => TimeEmbedding::Sinusoidal { dim: a.embed_dim },
        EmbeddingKind::Fourier => TimeEmbedding::Fourier { dim: a.embed_dim, scale: a.fourier_scale },
    };
    let arch = match a.net {
        NetKind::Mlp => Arch::Mlp,
        NetKind::Unet => {
            let [channels, height, width] = image_shape(a, dim, data_shape)?;
            Arch::Unet(UnetConfig {
                channels,
                height,
                width,
                base: a.base_channels,
                mults: a.channel_mults.clone(),
                res_blocks: a.res_blocks,
                attn: a.attn.clone(),
                dropout: a.dropout,
                groups: a.groups,
            })
        }
    };
    Ok(NetConfig {
        dim,
        width: a.width,
        depth: a.depth,
        activation: a.activation,
        embedding,
        parameterization: parameterization(a),
        classes,
        head: if a.classifier { Head::Classifier } else { Head::Score },
        arch,
    })
}

/// `--param`, defaulting to the flow velocity with `--process flow`.
fn parameterization(a: &TrainArgs) -> Parameterization {
    match a.process {
        Process::Flow if !a.given.iter().any(|g| g == "parameterization") => Parameterization::Flow,
        _ => a.parameterization,
    }
}

/// The forward process of `train`'s options.
///
/// # Errors
/// Options of the other process, a `--flow-t-max` out of range.
pub fn sde_spec(a: &TrainArgs) -> anyhow::Result<SdeSpec> {
    let is_given = |id: &str| a.given.iter().any(|g| g == id);
    let spec = match a.process {
        Process::Vp => {
            if is_given("flow_t_max") {
                bail!("--flow-t-max applies to --process flow only");
            }
            SdeSpec::Vp { beta_min: a.beta_min, beta_max: a.beta_max }
        }
        Process::Flow => {
            if let Some(flag) = ["beta_min", "beta_max"].iter().find(|id| is_given(id)) {
                bail!("--{} applies to --process vp only", flag.replace('_', "-"));
            }
            SdeSpec::Flow { t_max: a.flow_t_max }
        }
    };
    if let Err(e) = spec.build() {
        match spec {
            SdeSpec::Flow { t_max } => bail!("--flow-t-max {t_max}: must be in (0.001, 1) ({e})"),
            SdeSpec::Vp { .. } => bail!("--beta-min/--beta-max: {e}"),
        }
    }
    Ok(spec)
}

/// The default `--batch` of each network. A U-Net step on 512 28x28 images
/// takes seconds on one CPU core, so a budget of minutes (the README's MNIST
/// run) leaves a few hundred updates; 128 images a step give four times as
/// many updates for the same time.
pub fn default_batch(net: NetKind) -> usize {
    match net {
        NetKind::Mlp => 512,
        NetKind::Unet => 128,
    }
}

/// `--batch`, or the network's default.
pub fn batch_size(a: &TrainArgs) -> usize {
    a.batch.unwrap_or_else(|| default_batch(a.net))
}

/// The optimisation settings of `train`'s options.
fn train_config(a: &TrainArgs) -> TrainConfig {
    TrainConfig {
        steps: a.steps.unwrap_or(4000),
        batch_size: batch_size(a),
        lr: a.lr,
        warmup: a.warmup,
        grad_clip: a.grad_clip,
        ema_decay: a.ema,
        weighting: a.weighting,
        t_min: 1e-5,
        seed: a.seed,
        label_dropout: a.label_dropout,
    }
}

/// The training data, split, scaled and described.
struct Prepared {
    source: DataSource,
    /// Training rows in data coordinates.
    train: Array2<f64>,
    /// Training rows as the network sees them (standardised, or images scaled to [-1, 1]).
    scaled: Array2<f64>,
    held_out: Array2<f64>,
    /// The training rows' labels, for a conditional score or a classifier.
    labels: Option<Vec<usize>>,
    /// The held-out rows' labels (with `labels`).
    held_labels: Option<Vec<usize>>,
    /// Number of classes of the network (0: unconditional).
    classes: usize,
    scaling: Scaling,
    /// What the checkpoint records about the data.
    info: DataInfo,
}

/// Loads the data and splits it; with labels for a conditional score or a classifier.
fn prepare_data(a: &TrainArgs) -> anyhow::Result<Prepared> {
    let source = DataSource::parse(&a.data)?;
    if let DataSource::Toy(_) = source {
        check_split(a, &source, a.n)?;
    }
    if let Some(l) = a.labels.as_deref().filter(|l| !l.is_file()) {
        bail!("--labels {}: no such file", l.display());
    }
    let data = source.load_dataset(a.n, a.seed, a.labels.as_deref()).map_err(flag_names)?;
    if !matches!(source, DataSource::Toy(_)) {
        check_split(a, &source, data.x.nrows())?;
    }
    let labels = if a.conditional || a.classifier {
        let what = if a.classifier { "a classifier" } else { "--conditional" };
        match &data.labels {
            Some(y) => Some(y),
            None => bail!(
                "{what} needs data with classes: eight-gaussians, mixture, mnist, digits, or a .npy file with --labels (got {source})"
            ),
        }
    } else {
        None
    };
    // The same split with or without labels, so runs share their held-out data.
    let (t, h) = split_indices(data.x.nrows(), a.holdout, a.seed ^ 0x5eed)?;
    let train = data.x.select(ndarray::Axis(0), &t);
    let held_out = data.x.select(ndarray::Axis(0), &h);
    let held_labels = labels.map(|y| h.iter().map(|&i| y[i]).collect());
    let labels = labels.map(|y| t.iter().map(|&i| y[i]).collect());
    let classes = if labels.is_some() { data.classes } else { 0 };
    let scaling = data.scaling(train.view())?;
    let scaled = scaling.apply(train.view())?;
    let info = DataInfo::of_dataset(source.to_string(), &data, train.view(), &scaling)?;
    Ok(Prepared { source, train, scaled, held_out, labels, held_labels, classes, scaling, info })
}

/// A trainer continuing the checkpoint `ckpt`, which must be of the same data and kind.
fn resume(a: &TrainArgs, ckpt: &Path, data: &Prepared, device: tch::Device) -> anyhow::Result<Trainer> {
    let loaded = checkpoint::load(ckpt, device).with_context(|| "--resume needs a checkpoint in --out")?;
    let (weights, _) = checkpoint::paths(ckpt);
    let differ = conflicts(a, &loaded.meta);
    if !differ.is_empty() {
        bail!(
            "--resume continues the network and settings of {}, but the command line asks for others: {}; drop {}, or start a new run with --force instead of --resume",
            weights.display(),
            differ.join(", "),
            if differ.len() == 1 { "that option" } else { "those options" }
        );
    }
    if !loaded.meta.data.same_data(&data.info) {
        bail!(
            "the data differ from the checkpoint's ({} rows of {}): pass the same --data, --n, --holdout and --seed as the first run",
            loaded.meta.data.rows,
            loaded.meta.data.source
        );
    }
    let net = &loaded.meta.net;
    if (net.classes, net.head == Head::Classifier) != (data.classes, a.classifier) {
        bail!(
            "the checkpoint is {} but this run asks for {}: resume with the same command (train / train --conditional / train-classifier)",
            describe(net.classes, net.head == Head::Classifier),
            describe(data.classes, a.classifier)
        );
    }
    let mut config = loaded.meta.train.clone();
    config.steps = a.steps.unwrap_or(config.steps);
    eprintln!("resuming from {} at step {} of {}", weights.display(), loaded.state.step, config.steps);
    Trainer::with_state(loaded.net, loaded.meta.sde, config, &data.scaled, loaded.state).map_err(flag_names)
}

/// The name clap gives `v` on the command line.
fn cli_name(v: impl clap::ValueEnum) -> String {
    v.to_possible_value().map(|p| p.get_name().to_string()).unwrap_or_default()
}

/// The options given on the command line whose values differ from the
/// checkpoint's, as `--width 64 (the checkpoint's: 16)`.
fn conflicts(a: &TrainArgs, meta: &Meta) -> Vec<String> {
    let (net, t) = (&meta.net, &meta.train);
    let (kind, embed_dim, scale) = match net.embedding {
        TimeEmbedding::Sinusoidal { dim } => (EmbeddingKind::Sinusoidal, dim, None),
        TimeEmbedding::Fourier { dim, scale } => (EmbeddingKind::Fourier, dim, Some(scale)),
    };
    let process = match meta.sde {
        SdeSpec::Vp { .. } => Process::Vp,
        SdeSpec::Flow { .. } => Process::Flow,
    };
    let mut pairs: Vec<(&str, &str, String, String)> = vec![
        ("process", "--process", cli_name(a.process), cli_name(process)),
        ("width", "--width", a.width.to_string(), net.width.to_string()),
        ("depth", "--depth", a.depth.to_string(), net.depth.to_string()),
        ("activation", "--activation", cli_name(a.activation), cli_name(net.activation)),
        ("embedding", "--embedding", cli_name(a.embedding), cli_name(kind)),
        ("embed_dim", "--embed-dim", a.embed_dim.to_string(), embed_dim.to_string()),
        ("parameterization", "--param", cli_name(a.parameterization), cli_name(net.parameterization)),
        ("batch", "--batch", batch_size(a).to_string(), t.batch_size.to_string()),
        ("lr", "--lr", a.lr.to_string(), t.lr.to_string()),
        ("warmup", "--warmup", a.warmup.to_string(), t.warmup.to_string()),
        ("grad_clip", "--grad-clip", a.grad_clip.to_string(), t.grad_clip.to_string()),
        ("ema", "--ema", a.ema.to_string(), t.ema_decay.to_string()),
        ("weighting", "--weighting", cli_name(a.weighting), cli_name(t.weighting)),
        ("label_dropout", "--label-dropout", a.label_dropout.to_string(), t.label_dropout.to_string()),
        ("seed", "--seed", a.seed.to_string(), t.seed.to_string()),
    ];
    match meta.sde {
        SdeSpec::Vp { beta_min, beta_max } => pairs.extend([
            ("beta_min", "--beta-min", a.beta_min.to_string(), beta_min.to_string()),
            ("beta_max", "--beta-max", a.beta_max.to_string(), beta_max.to_string()),
        ]),
        SdeSpec::Flow { t_max } => {
            pairs.push(("flow_t_max", "--flow-t-max", a.flow_t_max.to_string(), t_max.to_string()))
        }
    }
    let list = |v: &[usize]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",");
    match &net.arch {
        Arch::Mlp => pairs.push(("net", "--net", cli_name(a.net), cli_name(NetKind::Mlp))),
        Arch::Unet(u) => pairs.extend([
            ("net", "--net", cli_name(a.net), cli_name(NetKind::Unet)),
            ("image_shape", "--image-shape", list(&a.image_shape), list(&[u.channels, u.height, u.width])),
            ("base_channels", "--base-channels", a.base_channels.to_string(), u.base.to_string()),
            ("channel_mults", "--channel-mults", list(&a.channel_mults), list(&u.mults)),
            ("res_blocks", "--res-blocks", a.res_blocks.to_string(), u.res_blocks.to_string()),
            ("attn", "--attn", list(&a.attn), list(&u.attn)),
            ("dropout", "--dropout", a.dropout.to_string(), u.dropout.to_string()),
            ("groups", "--groups", a.groups.to_string(), u.groups.to_string()),
        ]),
    }
    if let Some(scale) = scale {
        pairs.push(("fourier_scale", "--fourier-scale", a.fourier_scale.to_string(), scale.to_string()));
    }
    pairs
        .into_iter()
        .filter(|(id, _, ours, theirs)| a.given.iter().any(|g| g == id) && ours != theirs)
        .map(|(_, flag, ours, theirs)| format!("{flag} {ours} (the checkpoint's: {theirs})"))
        .collect()
}

/// A fresh trainer, unless a checkpoint is in the way (and no `--force`).
fn start(a: &TrainArgs, ckpt: &Path, data: &Prepared, device: tch::Device) -> anyhow::Result<Trainer> {
    let (weights, _) = checkpoint::paths(ckpt);
    if weights.exists() && !a.force {
        bail!("{} exists: pass --resume to continue it or --force to start over", weights.display());
    }
    let sde = sde_spec(a)?;
    // Images carry their [C, H, W] (DataInfo::shape); tabular data a flat [D].
    let image = Some(data.info.shape.as_slice()).filter(|s| s.len() >= 2);
    let net = net_config(a, data.train.ncols(), data.classes, image)?;
    let mut config = train_config(a);
    let rows = data.train.nrows();
    if config.batch_size > rows {
        eprintln!("note: --batch {} is more than the {rows} training rows; using --batch {rows}", config.batch_size);
        config.batch_size = rows;
    }
    Trainer::new(net, sde, config, &data.scaled, device).map_err(flag_names)
}

/// Checks that splitting `rows` rows with `--holdout` leaves at least
/// [`MIN_TRAIN_ROWS`] training and [`MIN_HELDOUT_ROWS`] held-out rows.
fn check_split(a: &TrainArgs, source: &DataSource, rows: usize) -> anyhow::Result<()> {
    if rows == 0 {
        bail!(
            "--n 0: need at least {} samples ({MIN_TRAIN_ROWS} to train on, {MIN_HELDOUT_ROWS} held out)",
            MIN_TRAIN_ROWS + MIN_HELDOUT_ROWS
        );
    }
    let (train, held) = split_sizes(rows, a.holdout)
        .map_err(|e| anyhow::anyhow!("--holdout {} with {rows} rows of --data {source}: {e}", a.holdout))?;
    if train >= MIN_TRAIN_ROWS && held >= MIN_HELDOUT_ROWS {
        return Ok(());
    }
    let toy = matches!(source, DataSource::Toy(_));
    let rows_from =
        if toy { format!("--n {rows} rows of --data {source}") } else { format!("the {rows} rows of --data {source}") };
    let fix = match (toy, held < MIN_HELDOUT_ROWS) {
        (true, true) => "raise --holdout or --n",
        (true, false) => "raise --n or lower --holdout",
        (false, true) => "raise --holdout or pass a --data file with more rows",
        (false, false) => "pass a --data file with more rows or lower --holdout",
    };
    bail!(
        "--holdout {} splits {rows_from} into {train} training and {held} held-out rows: need at least {MIN_TRAIN_ROWS} training and {MIN_HELDOUT_ROWS} held-out rows; {fix}",
        a.holdout
    )
}

/// The library's names of sizes as this command's options (`width` is
/// `--width`, `batch size` is `--batch`, ...), so errors name what to change.
fn flag_names(e: scoresde::Error) -> anyhow::Error {
    if let scoresde::Error::InvalidArgument { name, value, reason } = &e {
        let flag = match name.as_str() {
            "width" => "--width",
            "depth" => "--depth",
            "embedding dim" => "--embed-dim",
            "fourier scale" => "--fourier-scale",
            "batch size" => "--batch",
            "dim" => "data dimension (columns of --data)",
            "labels" => "--labels",
            "image shape" => "--image-shape",
            "base channels" => "--base-channels",
            "channel multipliers" => "--channel-mults",
            "res blocks" => "--res-blocks",
            "attention resolutions" => "--attn",
            "dropout" => "--dropout",
            "groups" => "--groups",
            _ => return e.into(),
        };
        return scoresde::Error::invalid(flag, value, reason.clone()).into();
    }
    e.into()
}

/// Trains with a progress bar until the end or Ctrl-C, saving to `ckpt`;
/// returns how it ended and the seconds it took.
fn optimise(
    a: &TrainArgs,
    trainer: &mut Trainer,
    ckpt: &Path,
    info: &DataInfo,
    stop: &AtomicBool,
) -> anyhow::Result<(Outcome, f64)> {
    let pb = common::bar(trainer.config().steps, "training");
    pb.set_position(trainer.state().step);
    pb.reset_eta();
    let started = std::time::Instant::now();
    let outcome = trainer.run(
        a.log_every,
        a.save_every,
        stop,
        |p| {
            pb.set_position(p.step);
            if let Some(loss) = p.loss {
                pb.set_message(format!("loss {loss:.4}"));
            }
        },
        |t| checkpoint::save(ckpt, t, info).map(|_| ()),
    )?;
    pb.finish();
    Ok((outcome, started.elapsed().as_secs_f64()))
}

/// `scoresde train --save-train FILE`: the training rows (and labels) as .npy files.
pub fn export(a: &TrainArgs, file: &Path) -> anyhow::Result<()> {
    let data = prepare_data(a)?;
    save_npy(file, &data.train)?;
    println!("wrote {} ({} training rows of {})", file.display(), data.train.nrows(), data.source);
    if let Some(y) = &data.labels {
        let path = file.with_file_name(format!(
            "{}-labels.npy",
            file.file_stem().map_or_else(|| "train".into(), |s| s.to_string_lossy())
        ));
        let column = Array2::from_shape_fn((y.len(), 1), |(i, _)| y[i] as f64);
        save_npy(&path, &column)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// `scoresde train` and `train-classifier`: data, trainer (fresh or resumed),
/// optimisation with checkpoints, loss log and curve.
pub fn train(a: &TrainArgs, ctrl_c: &CtrlC) -> anyhow::Result<Trained> {
    // Handle SIGINT/SIGTERM before anything is written.
    let stop = ctrl_c.flag();
    let device = common::device(&a.device)?;
    let data = prepare_data(a)?;
    let lock = common::lock_folder("--out", &a.out)?;
    let ckpt = if a.classifier { common::classifier_path(&a.out) } else { common::model_path(&a.out) };
    let mut trainer = if a.resume { resume(a, &ckpt, &data, device)? } else { start(a, &ckpt, &data, device)? };
    if let Some(y) = &data.labels {
        trainer = trainer.with_labels(y)?;
    }
    let heldout = common::heldout_path(&a.out);
    save_npy(&heldout, &data.held_out)?;
    eprintln!(
        "training {} ({} parameters) on {} rows of {} (seed {}) for {} steps",
        describe_net(trainer.net().config()),
        trainer.net().num_params(),
        data.train.nrows(),
        data.source,
        a.seed,
        trainer.config().steps
    );
    let start_step = trainer.state().step;
    let (outcome, seconds) = optimise(a, &mut trainer, &ckpt, &data.info, &stop)?;
    let steps_run = trainer.state().step - start_step;
    eprintln!("{} steps in {seconds:.1} s ({:.0} steps/s)", steps_run, steps_run as f64 / seconds.max(1e-9));
    write_loss(&a.out, if a.classifier { "classifier-loss" } else { "loss" }, &trainer)?;
    if let (true, Some(y)) = (a.classifier, &data.held_labels) {
        write_noisy_accuracy(&a.out, &trainer, &data.scaling.apply(data.held_out.view())?, y, a.seed)?;
    }
    println!("wrote {} (+ .json sidecar)", checkpoint::paths(&ckpt).0.display());
    println!("wrote {}", heldout.display());
    if outcome == Outcome::Interrupted {
        eprintln!("interrupted at step {}; continue with: {}", trainer.state().step, resume_command(a, &data.source));
    }
    let Prepared { scaling, held_out, .. } = data;
    Ok(Trained { trainer, scaling, held_out, checkpoint: ckpt, seconds, steps_run, outcome, _lock: lock })
}

/// The command line that continues the run `a` (on `source`): what picks
/// the same data, and how to run, save and log; the network and training
/// settings come from the checkpoint.
fn resume_command(a: &TrainArgs, source: &DataSource) -> String {
    let mut args: Vec<String> =
        std::iter::once("scoresde").chain(command_name(a).split(' ')).map(String::from).collect();
    let mut push = |flag: &str, value: String| args.extend([flag.to_string(), value]);
    push("--data", a.data.clone());
    if let Some(labels) = &a.labels {
        push("--labels", labels.display().to_string());
    }
    if matches!(source, DataSource::Toy(_)) {
        push("--n", a.n.to_string());
    }
    push("--holdout", a.holdout.to_string());
    push("--seed", a.seed.to_string());
    push("--device", a.device.clone());
    push("--save-every", a.save_every.to_string());
    push("--log-every", a.log_every.to_string());
    push("--out", a.out.display().to_string());
    args.push("--resume".into());
    args.iter().map(|s| shell_quote(s)).collect::<Vec<_>>().join(" ")
}

/// `s` as one POSIX shell word: as is when it is plain, else single-quoted.
fn shell_quote(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:=@%+,".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The command that trains what `a` asks for.
fn command_name(a: &TrainArgs) -> &'static str {
    if a.classifier {
        "train-classifier"
    } else if a.conditional {
        "train --conditional"
    } else {
        "train"
    }
}

/// The architecture in a few words, for the start-of-training line.
fn describe_net(net: &NetConfig) -> String {
    match &net.arch {
        Arch::Mlp => format!("an MLP {}x{}", net.depth, net.width),
        Arch::Unet(u) => format!(
            "a U-Net on {}x{}x{} images, base {} channels x {:?}, {} res block(s) per level",
            u.channels, u.height, u.width, u.base, u.mults, u.res_blocks
        ),
    }
}

fn describe(classes: usize, classifier: bool) -> String {
    match (classes, classifier) {
        (_, true) => format!("a classifier over {classes} classes"),
        (0, false) => "an unconditional score".into(),
        (c, false) => format!("a conditional score over {c} classes"),
    }
}

/// The diffusion times at which a noise-conditional classifier's held-out accuracy is reported.
const ACCURACY_TIMES: [f64; 7] = [0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0];

/// The held-out accuracy of the trained classifier on noisy inputs
/// `x_t = a(t) x0 + sigma(t) z` (one draw of `z` per time, from `seed`) at
/// [`ACCURACY_TIMES`] (0 standing for the SDE's `t_eps`), printed and written to
/// OUT/classifier-accuracy.csv: how far into the diffusion the classifier that
/// guides sampling still knows the class (chance is 1/classes).
fn write_noisy_accuracy(
    out: &Path,
    trainer: &Trainer,
    held_out: &Array2<f64>,
    labels: &[usize],
    seed: u64,
) -> anyhow::Result<()> {
    use rand::SeedableRng as _;
    use scoresde::solvers::state::State as _;
    use scoresde::solvers::Rng;
    let classifier = trainer.ema_classifier()?;
    let sde = classifier.sde();
    let mut csv = String::from("t,accuracy,n\n");
    let mut line = Vec::new();
    for (k, &t) in ACCURACY_TIMES.iter().enumerate() {
        let t = t.max(sde.t_eps()).min(sde.t_max());
        let z = held_out.randn_like(&mut Rng::seed_from_u64(seed ^ 0xacc0 ^ k as u64));
        let x_t = held_out * sde.alpha(t) + z * sde.sigma(t);
        let accuracy = classifier.accuracy(&x_t, labels, t)?;
        csv += &format!("{t},{accuracy},{}\n", labels.len());
        line.push(format!("t={t}: {:.1}%", 100.0 * accuracy));
    }
    println!("held-out accuracy on noisy inputs ({} rows): {}", labels.len(), line.join(", "));
    let path = out.join("classifier-accuracy.csv");
    scoresde::fsutil::write_atomic(&path, csv.as_bytes())?;
    println!("wrote {}", path.display());
    Ok(())
}

/// Writes OUT/STEM.csv and OUT/STEM.png from the trainer's loss log.
pub fn write_loss(out: &Path, stem: &str, trainer: &Trainer) -> anyhow::Result<()> {
    let losses = &trainer.state().losses;
    let mut csv = String::from("step,loss\n");
    for (s, l) in losses {
        csv += &format!("{s},{l}\n");
    }
    let path = out.join(format!("{stem}.csv"));
    scoresde::fsutil::write_atomic(&path, csv.as_bytes())?;
    println!("wrote {}", path.display());
    crate::plot::loss_curve(&out.join(format!("{stem}.png")), losses)?;
    Ok(())
}
