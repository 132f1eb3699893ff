//! `--torchscript FILE`: sampling and evaluating a PyTorch model saved as TorchScript,
//! read under a schedule and a model convention (see `scoresde::torchscript`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use scoresde::schedule::{load_schedule, TableKind};
use scoresde::solvers::{sde_by_name, FinalStep, ModelConvention, Prediction, Sde, Spacing, TimeGrid, TimeInput};
use scoresde::torchscript::TorchScriptScore;
use tch::{Device, Kind};

/// The options that load a TorchScript model (shared by `sample` and `eval`).
#[derive(clap::Args, Debug, Clone)]
pub struct TorchScriptArgs {
    /// A TorchScript module (torch.jit.trace(model, inputs).save(FILE)) to use instead of
    /// --model: called as forward(x, t) (forward(x, t, class_labels) with --classes),
    /// x shaped [B, --shape], t a float32 [B] tensor of the --time-input value; it returns
    /// the --prediction, shaped like x. Needs --schedule and --shape.
    #[arg(long, value_name = "FILE", conflicts_with = "model")]
    pub torchscript: Option<PathBuf>,
    /// The model's noise schedule: a discrete one (ddpm-linear[:N], ddpm-scaled-linear[:N],
    /// ddpm-cosine[:N]), a table file (.npy or .json, see --table), or a continuous SDE
    /// (vp, subvp, ve, cosine, flow).
    #[arg(long, value_name = "NAME|FILE", requires = "torchscript")]
    pub schedule: Option<String>,
    /// What a --schedule file holds.
    #[arg(long, value_enum, default_value = "alphas-cumprod", requires = "schedule")]
    pub table: TableKind,
    /// What the module predicts: eps, x0, v, score or flow.
    #[arg(long, default_value = "eps", value_parser = parse_prediction, requires = "torchscript")]
    pub prediction: Prediction,
    /// The time value the module takes: t, timestep (the discrete schedule's index; the
    /// default for a discrete schedule), sigma (EDM's sigma/a) or c-noise (ln(sigma/a)/4)
    /// [default: timestep for a discrete schedule, t otherwise].
    #[arg(long, value_parser = parse_time_input, requires = "torchscript")]
    pub time_input: Option<TimeInput>,
    /// Scale the module's input by EDM's c_in = 1/sqrt(a^2 + sigma^2).
    #[arg(long, requires = "torchscript")]
    pub c_in: bool,
    /// One sample's shape as the module takes it, e.g. 3,32,32 (images) or 2 (points).
    #[arg(long, value_name = "C,H,W", value_delimiter = ',', requires = "torchscript")]
    pub shape: Vec<usize>,
    /// Land on diffusers' inference timesteps (a discrete schedule): leading[:OFFSET]
    /// (steps_offset, Stable Diffusion uses 1), trailing or linspace. The run ends with the
    /// Tweedie step (diffusers' last step to alphabar = 1), or at timestep 0 with --no-denoise.
    /// Replaces --grid.
    #[arg(long, value_name = "SPACING", value_parser = parse_spacing, requires = "torchscript")]
    pub spacing: Option<Spacing>,
    /// The state's dtype: f32, f16 or bf16 (the module's input is cast to the module's own
    /// dtype, the score comes back in this one; the schedule's arithmetic is f64).
    #[arg(long, default_value = "f32", value_parser = parse_dtype, requires = "torchscript")]
    pub dtype: Kind,
    /// The module's dtype [default: that of its parameters, f32 when it has none].
    #[arg(long, value_parser = parse_dtype, requires = "torchscript")]
    pub model_dtype: Option<Kind>,
    /// The module is class-conditional with N classes: forward(x, t, class_labels), label N
    /// being the null label (the unconditional score, for classifier-free guidance).
    #[arg(long, value_name = "N", requires = "torchscript")]
    pub classes: Option<usize>,
}

fn parse_prediction(v: &str) -> Result<Prediction, String> {
    v.parse().map_err(|e: scoresde::solvers::Error| e.to_string())
}

fn parse_time_input(v: &str) -> Result<TimeInput, String> {
    v.parse().map_err(|e: scoresde::solvers::Error| e.to_string())
}

/// `leading[:OFFSET]`, `trailing` or `linspace`.
pub fn parse_spacing(v: &str) -> Result<Spacing, String> {
    match v.split_once(':') {
        Some(("leading", off)) => off
            .parse::<usize>()
            .map(|steps_offset| Spacing::Leading { steps_offset })
            .map_err(|_| format!("`{off}` is not a steps offset (leading:1)")),
        None if v == "leading" => Ok(Spacing::Leading { steps_offset: 0 }),
        None if v == "trailing" => Ok(Spacing::Trailing),
        None if v == "linspace" => Ok(Spacing::Linspace),
        _ => Err(format!("`{v}`: known spacings are leading[:OFFSET], trailing, linspace")),
    }
}

/// `f32`, `f16` or `bf16` (also `f64`).
pub fn parse_dtype(v: &str) -> Result<Kind, String> {
    match v {
        "f32" | "float32" => Ok(Kind::Float),
        "f16" | "float16" => Ok(Kind::Half),
        "bf16" | "bfloat16" => Ok(Kind::BFloat16),
        "f64" | "float64" => Ok(Kind::Double),
        _ => Err(format!("`{v}`: known dtypes are f32, f16, bf16, f64")),
    }
}

/// The name of a spacing in file names: `leading`, `leading1`, `trailing`, `linspace`.
pub fn spacing_name(s: Spacing) -> String {
    match s {
        Spacing::Leading { steps_offset: 0 } => "leading".into(),
        Spacing::Leading { steps_offset } => format!("leading{steps_offset}"),
        Spacing::Trailing => "trailing".into(),
        Spacing::Linspace => "linspace".into(),
    }
}

/// `f32`, `f16`, `bf16` or `f64`: the name of a state dtype in file names.
pub fn dtype_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Half => "f16",
        Kind::BFloat16 => "bf16",
        Kind::Double => "f64",
        _ => "f32",
    }
}

/// A loaded module with what sampling needs to know about it.
pub struct Loaded {
    /// The score.
    pub score: TorchScriptScore,
    /// Elements of one sample.
    pub dim: usize,
    /// Whether the schedule is discrete (has timesteps).
    pub discrete: Option<scoresde::solvers::DiscreteVp>,
}

/// The schedule of `--schedule`: a table file when it names an existing `.npy`/`.json`
/// file, else a name.
pub fn schedule(a: &TorchScriptArgs) -> anyhow::Result<(Box<dyn Sde>, Option<scoresde::solvers::DiscreteVp>)> {
    let Some(name) = &a.schedule else {
        bail!("--torchscript needs --schedule (e.g. ddpm-linear:1000, or a table file)")
    };
    let path = Path::new(name);
    let is_file = matches!(path.extension().and_then(|e| e.to_str()), Some("npy" | "json"));
    if is_file {
        let sde = load_schedule(path, a.table).with_context(|| format!("--schedule {name}"))?;
        return Ok((Box::new(sde.clone()), Some(sde)));
    }
    let discrete = scoresde::solvers::discrete_by_name(name).ok();
    let sde = sde_by_name(name).with_context(|| format!("--schedule {name}"))?;
    Ok((sde, discrete))
}

/// Loads `--torchscript` with its schedule and convention onto `device`, and probes it with
/// one zero sample so that a wrong signature or output fails before any output is written.
pub fn load(a: &TorchScriptArgs, device: Device) -> anyhow::Result<Loaded> {
    let Some(path) = &a.torchscript else { bail!("no --torchscript given") };
    if a.shape.is_empty() {
        bail!("--torchscript needs --shape: one sample's shape as the module takes it (e.g. 3,32,32, or 2 for points)");
    }
    let (sde, discrete) = schedule(a)?;
    let time_input = a.time_input.unwrap_or(if discrete.is_some() { TimeInput::Timestep } else { TimeInput::T });
    let convention = ModelConvention::new(a.prediction, time_input).with_c_in(a.c_in);
    let mut score = TorchScriptScore::load(path, sde, convention, device)
        .with_context(|| format!("--torchscript {}", path.display()))?
        .with_sample_shape(&a.shape)
        .context("--shape")?;
    if let Some(kind) = a.model_dtype {
        score = score.with_dtype(kind);
    }
    if let Some(n) = a.classes {
        score = score.with_classes(n);
    }
    let dim = a.shape.iter().product();
    score.probe(dim).with_context(|| format!("--torchscript {} (a first call on a zero sample)", path.display()))?;
    eprintln!(
        "TorchScript model {}: {convention} on {}, module dtype {:?}, state dtype {:?}",
        path.display(),
        a.schedule.as_deref().unwrap_or_default(),
        score.kind(),
        a.dtype
    );
    Ok(Loaded { score, dim, discrete })
}

/// The time grid of a run: diffusers' timesteps with `--spacing` (ending with the Tweedie
/// step, or at timestep 0 without it), else `None` (the `--grid` by name).
pub fn grid(a: &TorchScriptArgs, loaded: &Loaded, steps: usize, denoise: bool) -> anyhow::Result<Option<TimeGrid>> {
    let Some(spacing) = a.spacing else { return Ok(None) };
    let Some(sde) = &loaded.discrete else {
        bail!("--spacing needs a discrete --schedule (ddpm-linear:1000, a table file): it picks diffusers' timesteps")
    };
    let end = if denoise { FinalStep::Tweedie } else { FinalStep::FirstTimestep };
    Ok(Some(sde.diffusers_grid(spacing, steps, end).context("--spacing")?))
}

/// The default output folder of a module's runs: the folder holding it.
pub fn default_out(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spacing_and_dtype_names_parse() {
        assert_eq!(parse_spacing("leading"), Ok(Spacing::Leading { steps_offset: 0 }));
        assert_eq!(parse_spacing("leading:1"), Ok(Spacing::Leading { steps_offset: 1 }));
        assert_eq!(parse_spacing("trailing"), Ok(Spacing::Trailing));
        assert_eq!(parse_spacing("linspace"), Ok(Spacing::Linspace));
        for bad in ["lead", "leading:x", "trailing:1", ""] {
            assert!(parse_spacing(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_dtype("bf16"), Ok(Kind::BFloat16));
        assert!(parse_dtype("int8").is_err());
        assert_eq!(spacing_name(Spacing::Leading { steps_offset: 1 }), "leading1");
    }
}
