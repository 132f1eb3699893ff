//! Guidance: steering a score model towards a class `y`, as score wrappers.
//!
//! Both kinds of guidance only change the score, so they are [`Score`]s that
//! wrap other models, and every integrator samples with them unchanged:
//!
//! * [`ClassifierGuided`] (Dhariwal & Nichol 2021, "Diffusion models beat GANs",
//!   Algorithm 1; Song et al. 2021, §5):
//!   `s(x, t) + w grad_x log p_t(y | x)`, with the gradient of a noise-conditional
//!   classifier ([`ClassifierGradient`]). `w` is an inverse temperature: the
//!   guided score is that of `p_t(x) p_t(y | x)^w`, so `w = 1` gives the exact
//!   class-conditional score when the classifier is exact.
//! * [`ClassifierFreeGuided`] (Ho & Salimans 2022, "Classifier-free diffusion
//!   guidance", eq. 6): `(1 + w) s(x, t, y) - w s(x, t, ∅)` from one
//!   conditional model ([`ConditionalScore`]). Since
//!   `s(x, t, y) - s(x, t, ∅) = grad_x log p_t(y | x)`, this is classifier guidance
//!   with scale `1 + w`: `w = 0` is plain conditional sampling.
//!
//! Every finite scale has a meaning, so none is rejected but NaN and ±inf: both
//! wrappers give the score of `p_t(x) p_t(y | x)^γ`, with exponent
//! ([`ClassifierGuided::exponent`], [`ClassifierFreeGuided::exponent`])
//! `γ = w` for classifier guidance and `γ = 1 + w` for classifier-free guidance.
//! `γ > 1` sharpens towards the class, `γ = 1` is the class-conditional score,
//! `0 < γ < 1` weakens the class, `γ = 0` ignores it (the unconditional score:
//! classifier guidance at `w = 0`, classifier-free at `w = -1`), and `γ < 0`
//! steers away from it: concept negation (Liu et al. 2022, "Compositional
//! visual generation with composable diffusion models", arXiv 2206.01714) and
//! negative prompts weight `s(x, t, y) - s(x, t, ∅)` negatively, though the
//! tilted density can lie far from the data (Chang et al. 2024, arXiv
//! 2411.17077). diffusers' and k-diffusion's `guidance_scale` is `γ`, i.e.
//! `1 + w` here.
//!
//! # Guidance interval and CFG rescale
//!
//! Two options of [`ClassifierFreeGuided`] fix known artefacts of strong guidance:
//!
//! * [`ClassifierFreeGuided::with_interval`] (Kynkäänniemi et al. 2024, "Applying
//!   guidance in a limited interval improves sample and distribution quality in
//!   diffusion models", arXiv 2404.07724): guidance only while the noise level is in
//!   `[lo, hi]`, the conditional score alone elsewhere (one model evaluation there). The
//!   noise level is EDM's `σ̃(t) = σ(t) / a(t)`, the noise of the scaled-out state
//!   `x / a = x0 + σ̃ z`, which is what the paper's intervals are given in (EDM2's
//!   `(0.28, 5.42]`); for the VE SDE it is `σ(t)` itself. Guidance at high noise is what
//!   drags samples to a few modes; at low noise it mostly shrinks the spread.
//! * [`ClassifierFreeGuided::with_rescale`] (Lin et al. 2024, "Common diffusion noise
//!   schedules and sample steps are flawed", arXiv 2305.08891, §3.4): per sample, the
//!   guided prediction is scaled to the standard deviation (over its elements) of the
//!   conditional one, and blended with the unscaled one by `φ`:
//!   `s ← s_cfg (φ std(s_cond) / std(s_cfg) + 1 − φ)`. The paper rescales the model's
//!   ε (or v) prediction; here the score is rescaled, which for ε is the same thing:
//!   `ε̂ = −σ(t) s` with one scalar for every sample and element at a given `t`, so
//!   `std(ε̂_cond) / std(ε̂_cfg) = std(s_cond) / std(s_cfg)` and the blend, being
//!   linear, commutes with the factor `−σ(t)`. (A v prediction,
//!   `v = −(σ/a)((a² + σ²) s + x)`, carries `x` too, so its rescale differs.) A sample
//!   whose guided score has zero spread (one element per sample, as in 1-D data) is left
//!   as it is.
//!
//! `φ = 0` and an interval covering the whole run give plain CFG bit for bit (tested).
//! On the labelled Gaussian mixture with the exact score (`solvers/tests/guidance.rs`,
//! 2-D, class spread 0.85), strong guidance (`w = 10`) with the interval `σ̃ ∈ [1, 5]`
//! keeps a spread of 0.76 where plain CFG shrinks it to 0.67, at a purity of 0.987
//! instead of 0.998 (0.894 without guidance). The rescale needs many elements per sample:
//! on 2-D samples the std of two numbers can be near 0 and the rescale inflates the
//! spread many-fold.
//!
//! Models are borrowed (`&model`, for `Sync` models such as the closed forms)
//! or moved in (tensor networks, which are not `Sync`); `set_class` and
//! `set_scale` re-aim a wrapper without rebuilding it.
//!
//! The closed-form oracle (in [`crate::oracle`]) is [`LabelledMixture`]: Gaussian-mixture data whose
//! classes are sets of components, so `p_t(x | y)`, its score, `p_t(y | x)` and
//! `grad_x log p_t(y | x)` are exact at every `t`; [`ExactConditional`] puts it
//! under an SDE and implements both traits.
//!
//! ```
//! use scoresde_solvers::prelude::*;
//! let sde = VpSde::default();
//! let data = LabelledMixture::by_component(GaussianMixture::ring(8, 2.0, 0.1)?)?;
//! let exact = ExactConditional::new(data, sde);
//! // Sample class 3 with classifier guidance at inverse temperature 2.
//! let guided = ClassifierGuided::new(&exact, &exact, 3, 2.0)?;
//! let grid = TimeGrid::reverse(&sde, 50)?;
//! let mut noise = GaussianNoise::new(0);
//! let x_t = prior_sample(&sde, &ndarray::Array2::<f64>::zeros((64, 2)), &mut noise);
//! let run = Sampler::new(&sde, &guided).run(&mut Ancestral::new(), x_t, &grid, &mut noise)?;
//! assert_eq!(run.x.dim(), (64, 2));
//! # Ok::<(), scoresde_solvers::Error>(())
//! ```

use crate::error::{Error, Result};
use crate::score::Score;
use crate::sde::Sde;
use crate::state::State;

#[doc(no_inline)]
pub use crate::oracle::{ExactConditional, LabelledMixture};

/// A noise-conditional classifier's input gradient `grad_x log p_t(y | x)`.
///
/// Object-safe; [`ClassifierGuided`] takes any implementation.
pub trait ClassifierGradient<S: State>: Send {
    /// `grad_x log p_t(class | x)` for each sample of the batch `x` at time `t`,
    /// with the shape of `x`.
    ///
    /// # Errors
    /// A class `>= n_classes()`, shape mismatches, a time the model cannot
    /// handle, or a failing model.
    fn grad_log_prob(&self, x: &S, t: f64, class: usize) -> Result<S>;

    /// Number of classes `C`; classes are `0..C`.
    fn n_classes(&self) -> usize;
}

/// A class-conditional score `s(x, t, y) ~ grad_x log p_t(x | y)`, where the
/// class `None` (the null label ∅) asks for the unconditional score.
///
/// Object-safe; [`ClassifierFreeGuided`] takes any implementation.
pub trait ConditionalScore<S: State>: Send {
    /// The score of the batch `x` at time `t` given `class` (`None`: unconditional),
    /// with the shape of `x`.
    ///
    /// # Errors
    /// A class `>= n_classes()`, shape mismatches, a time the model cannot
    /// handle, or a failing model.
    fn score_cond(&self, x: &S, t: f64, class: Option<usize>) -> Result<S>;

    /// Number of classes `C`; classes are `0..C`.
    fn n_classes(&self) -> usize;
}

impl<S: State, T: ClassifierGradient<S> + Sync + ?Sized> ClassifierGradient<S> for &T {
    fn grad_log_prob(&self, x: &S, t: f64, class: usize) -> Result<S> {
        (**self).grad_log_prob(x, t, class)
    }
    fn n_classes(&self) -> usize {
        (**self).n_classes()
    }
}

impl<S: State, T: ClassifierGradient<S> + ?Sized> ClassifierGradient<S> for Box<T> {
    fn grad_log_prob(&self, x: &S, t: f64, class: usize) -> Result<S> {
        (**self).grad_log_prob(x, t, class)
    }
    fn n_classes(&self) -> usize {
        (**self).n_classes()
    }
}

impl<S: State, T: ConditionalScore<S> + Sync + ?Sized> ConditionalScore<S> for &T {
    fn score_cond(&self, x: &S, t: f64, class: Option<usize>) -> Result<S> {
        (**self).score_cond(x, t, class)
    }
    fn n_classes(&self) -> usize {
        (**self).n_classes()
    }
}

impl<S: State, T: ConditionalScore<S> + ?Sized> ConditionalScore<S> for Box<T> {
    fn score_cond(&self, x: &S, t: f64, class: Option<usize>) -> Result<S> {
        (**self).score_cond(x, t, class)
    }
    fn n_classes(&self) -> usize {
        (**self).n_classes()
    }
}

/// Checks that `class` is one of `0..n_classes`.
///
/// # Errors
/// [`Error::InvalidParameter`] naming `class` and the number of classes.
pub fn check_class(class: usize, n_classes: usize) -> Result<()> {
    if class < n_classes {
        Ok(())
    } else if n_classes == 0 {
        Err(Error::param("class", class, "the model has no classes (it was trained without labels)"))
    } else {
        Err(Error::param("class", class, format!("must be in 0..{n_classes} (the model has {n_classes} classes)")))
    }
}

fn check_scale(scale: f64) -> Result<f64> {
    if scale.is_finite() {
        Ok(scale)
    } else {
        Err(Error::param("guidance scale", scale, "must be finite"))
    }
}

/// Classifier guidance: `s(x, t) + w grad_x log p_t(y | x)`; see the [module docs](self).
///
/// `w` (the guidance scale) is an inverse temperature on the classifier:
/// `w = 0` is the unguided score, `w = 1` the class-conditional score when
/// score and classifier are exact, `w > 1` sharpens towards the class and
/// `w < 0` steers away from it (the score of `p_t(x) / p_t(y | x)^|w|`).
pub struct ClassifierGuided<'a, S: State> {
    score: Box<dyn Score<S> + 'a>,
    classifier: Box<dyn ClassifierGradient<S> + 'a>,
    class: usize,
    scale: f64,
}

impl<'a, S: State> ClassifierGuided<'a, S> {
    /// Guides `score` towards `class` with `classifier` at scale `w`. Either
    /// model may be borrowed (`&model`, when it is `Sync`) or owned.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] when `class >= classifier.n_classes()` or `w`
    /// is not finite (any finite `w` has a meaning, negative ones included; see
    /// the [module docs](self)).
    pub fn new(
        score: impl Score<S> + 'a,
        classifier: impl ClassifierGradient<S> + 'a,
        class: usize,
        w: f64,
    ) -> Result<Self> {
        check_class(class, classifier.n_classes())?;
        let scale = check_scale(w)?;
        Ok(Self { score: Box::new(score), classifier: Box::new(classifier), class, scale })
    }

    /// The class guided towards.
    pub fn class(&self) -> usize {
        self.class
    }

    /// The guidance scale `w`.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// The exponent `γ = w` of `p_t(y | x)` in the guided density
    /// `p_t(x) p_t(y | x)^γ`: `γ <= 0` does not steer towards the class (see the
    /// [module docs](self)).
    pub fn exponent(&self) -> f64 {
        self.scale
    }

    /// Guides towards `class` from now on.
    ///
    /// # Errors
    /// As [`ClassifierGuided::new`]; nothing changes on error.
    pub fn set_class(&mut self, class: usize) -> Result<()> {
        check_class(class, self.classifier.n_classes())?;
        self.class = class;
        Ok(())
    }

    /// Uses the guidance scale `w` from now on.
    ///
    /// # Errors
    /// As [`ClassifierGuided::new`]; nothing changes on error.
    pub fn set_scale(&mut self, w: f64) -> Result<()> {
        self.scale = check_scale(w)?;
        Ok(())
    }

    /// The wrapped score and classifier.
    pub fn into_parts(self) -> (Box<dyn Score<S> + 'a>, Box<dyn ClassifierGradient<S> + 'a>) {
        (self.score, self.classifier)
    }
}

impl<S: State> std::fmt::Debug for ClassifierGuided<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClassifierGuided").field("class", &self.class).field("scale", &self.scale).finish()
    }
}

impl<S: State> Score<S> for ClassifierGuided<'_, S> {
    /// One score and one classifier-gradient evaluation (only the score when `w = 0`).
    fn score(&self, x: &S, t: f64) -> Result<S> {
        let mut s = self.score.score(x, t)?;
        if self.scale != 0.0 {
            let g = self.classifier.grad_log_prob(x, t, self.class)?;
            s.axpby(1.0, self.scale, &g)?;
        }
        Ok(s)
    }
}

/// Classifier-free guidance: `(1 + w) s(x, t, y) - w s(x, t, ∅)`; see the
/// [module docs](self). `w = 0` is the conditional score, `w > 0` sharpens
/// towards the class, `-1 < w < 0` weakens it, `w = -1` is the unconditional
/// score and `w < -1` steers away from the class.
pub struct ClassifierFreeGuided<'a, S: State> {
    model: Box<dyn ConditionalScore<S> + 'a>,
    class: usize,
    scale: f64,
    /// Guidance only for `σ(t)/a(t)` in `[lo, hi]` of this SDE.
    interval: Option<(Box<dyn Sde + 'a>, f64, f64)>,
    /// CFG rescale `φ` (0: off).
    rescale: f64,
}

impl<'a, S: State> ClassifierFreeGuided<'a, S> {
    /// Guides the conditional `model` towards `class` at scale `w`; the model
    /// may be borrowed (`&model`, when it is `Sync`) or owned.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] when `class >= model.n_classes()` or `w` is
    /// not finite (any finite `w` has a meaning, `w <= -1` included; see the
    /// [module docs](self)).
    pub fn new(model: impl ConditionalScore<S> + 'a, class: usize, w: f64) -> Result<Self> {
        check_class(class, model.n_classes())?;
        let scale = check_scale(w)?;
        Ok(Self { model: Box::new(model), class, scale, interval: None, rescale: 0.0 })
    }

    /// Guides only where EDM's noise level `σ̃(t) = σ(t) / a(t)` of `sde` lies in
    /// `[lo, hi]`, and uses the conditional score alone elsewhere (Kynkäänniemi et al.
    /// 2024; see the [module docs](self)).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming `guidance interval` unless `0 <= lo < hi` and
    /// both are finite.
    pub fn with_interval(mut self, sde: Box<dyn Sde + 'a>, lo: f64, hi: f64) -> Result<Self> {
        if !(lo.is_finite() && hi.is_finite() && lo >= 0.0 && lo < hi) {
            return Err(Error::param(
                "guidance interval",
                format!("[{lo}, {hi}]"),
                "needs finite noise levels 0 <= lo < hi (EDM's sigma = sigma(t)/a(t))",
            ));
        }
        self.interval = Some((sde, lo, hi));
        Ok(self)
    }

    /// CFG rescale with blend `φ` in `[0, 1]` (Lin et al. 2024, §3.4; see the
    /// [module docs](self)): `φ = 0` is plain CFG, `φ = 1` gives the guided score the
    /// per-sample standard deviation of the conditional one.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming `cfg rescale` unless `0 <= φ <= 1`.
    pub fn with_rescale(mut self, phi: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&phi) {
            return Err(Error::param("cfg rescale", phi, "must be in [0, 1]"));
        }
        self.rescale = phi;
        Ok(self)
    }

    /// The guidance interval `(lo, hi)` in EDM's noise level, if one is set.
    pub fn interval(&self) -> Option<(f64, f64)> {
        self.interval.as_ref().map(|(_, lo, hi)| (*lo, *hi))
    }

    /// The CFG rescale blend `φ` (0: off).
    pub fn rescale(&self) -> f64 {
        self.rescale
    }

    /// Whether guidance applies at `t` (inside the interval, if any).
    pub fn guides_at(&self, t: f64) -> bool {
        match &self.interval {
            Some((sde, lo, hi)) => {
                let level = sde.sigma(t) / sde.alpha(t);
                *lo <= level && level <= *hi
            }
            None => true,
        }
    }

    /// The class guided towards.
    pub fn class(&self) -> usize {
        self.class
    }

    /// The guidance scale `w`.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// The exponent `γ = 1 + w` of `p_t(y | x)` in the guided density
    /// `p_t(x) p_t(y | x)^γ` (diffusers' `guidance_scale`): `γ <= 0`, i.e.
    /// `w <= -1`, does not steer towards the class (see the [module docs](self)).
    pub fn exponent(&self) -> f64 {
        1.0 + self.scale
    }

    /// Guides towards `class` from now on.
    ///
    /// # Errors
    /// As [`ClassifierFreeGuided::new`]; nothing changes on error.
    pub fn set_class(&mut self, class: usize) -> Result<()> {
        check_class(class, self.model.n_classes())?;
        self.class = class;
        Ok(())
    }

    /// Uses the guidance scale `w` from now on.
    ///
    /// # Errors
    /// As [`ClassifierFreeGuided::new`]; nothing changes on error.
    pub fn set_scale(&mut self, w: f64) -> Result<()> {
        self.scale = check_scale(w)?;
        Ok(())
    }

    /// The wrapped conditional model.
    pub fn into_inner(self) -> Box<dyn ConditionalScore<S> + 'a> {
        self.model
    }
}

impl<S: State> std::fmt::Debug for ClassifierFreeGuided<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClassifierFreeGuided")
            .field("class", &self.class)
            .field("scale", &self.scale)
            .field("interval", &self.interval())
            .field("rescale", &self.rescale)
            .finish()
    }
}

impl<S: State> Score<S> for ClassifierFreeGuided<'_, S> {
    /// Two model evaluations (one, the conditional, when `w = 0` or outside the
    /// guidance interval).
    fn score(&self, x: &S, t: f64) -> Result<S> {
        let mut s = self.model.score_cond(x, t, Some(self.class))?;
        if self.scale != 0.0 && self.guides_at(t) {
            let u = self.model.score_cond(x, t, None)?;
            let cond = (self.rescale != 0.0).then(|| s.duplicate());
            s.axpby(1.0 + self.scale, -self.scale, &u)?;
            if let Some(cond) = cond {
                rescale(&mut s, &cond, self.rescale)?;
            }
        }
        Ok(s)
    }
}

/// CFG rescale: `s <- s (phi std(cond) / std(s) + 1 - phi)` per sample; a sample with
/// zero spread is left as it is, a NaN stays NaN.
fn rescale<S: State>(s: &mut S, cond: &S, phi: f64) -> Result<()> {
    let (want, got) = (cond.sample_stds()?, s.sample_stds()?);
    let factors: Vec<f64> =
        want.iter().zip(&got).map(|(&c, &g)| if g == 0.0 { 1.0 } else { phi * (c / g) + (1.0 - phi) }).collect();
    s.scale_samples(&factors)
}

/// A conditional model at a fixed class (or, with `None`, unconditional) as a
/// plain [`Score`]: to sample a conditional network without guidance.
pub struct Conditioned<'a, S: State> {
    model: Box<dyn ConditionalScore<S> + 'a>,
    class: Option<usize>,
}

impl<'a, S: State> Conditioned<'a, S> {
    /// `model` at `class` (`None`: the unconditional score).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] when `class >= model.n_classes()`.
    pub fn new(model: impl ConditionalScore<S> + 'a, class: Option<usize>) -> Result<Self> {
        if let Some(c) = class {
            check_class(c, model.n_classes())?;
        }
        Ok(Self { model: Box::new(model), class })
    }
}

impl<S: State> std::fmt::Debug for Conditioned<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conditioned").field("class", &self.class).finish()
    }
}

impl<S: State> Score<S> for Conditioned<'_, S> {
    fn score(&self, x: &S, t: f64) -> Result<S> {
        self.model.score_cond(x, t, self.class)
    }
}
