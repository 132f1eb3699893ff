//! [`LabelledMixture`]: Gaussian-mixture data whose classes are sets of
//! components, so every quantity of guidance is exact at every `t`; and
//! [`ExactConditional`], its exact conditional model under an SDE (the oracle
//! of guidance tests).

use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand_distr::StandardNormal;

use super::GaussianMixture;
use crate::error::{Error, Result};
use crate::guidance::{check_class, ClassifierGradient, ConditionalScore};
use crate::score::Score;
use crate::sde::Sde;
use crate::state::{Element, Rng, State};

/// Labelled Gaussian-mixture data: each component of a [`GaussianMixture`]
/// belongs to one class, so class `y` is the sub-mixture of its components,
/// with prior `p(y)` the sum of their weights. Every quantity of guidance is
/// then closed-form at every `(a, sigma)` (the marginal of `a X_0 + sigma Z`):
///
/// * `p_t(x | y)`: the class's sub-mixture, perturbed, and its score `s_t(x | y)`;
/// * `p_t(y | x) = p(y) p_t(x | y) / p_t(x)` (softmax over classes of log joints);
/// * `grad_x log p_t(y | x) = s_t(x | y) - s_t(x)`.
#[derive(Debug, Clone)]
pub struct LabelledMixture {
    data: GaussianMixture,
    labels: Vec<usize>,
    /// `p_0(x | y)` per class.
    classes: Vec<GaussianMixture>,
    /// `ln p(y)` per class.
    class_log_weights: Vec<f64>,
}

impl LabelledMixture {
    /// `data` with component `k` in class `labels[k]`; the classes are
    /// `0..=max(labels)`, each of which must own a component.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when `labels` does not have one entry per
    /// component; [`Error::InvalidParameter`] when a class in between owns no component.
    pub fn new(data: GaussianMixture, labels: Vec<usize>) -> Result<Self> {
        let k = data.n_components();
        if labels.len() != k {
            return Err(Error::ShapeMismatch { what: "mixture labels", expected: vec![k], got: vec![labels.len()] });
        }
        let n_classes = labels.iter().max().map_or(0, |m| m + 1);
        let (weights, means, covs) = (data.weights(), data.means(), data.covariances());
        let mut classes = Vec::with_capacity(n_classes);
        let mut class_log_weights = Vec::with_capacity(n_classes);
        for y in 0..n_classes {
            let members: Vec<usize> = (0..k).filter(|&i| labels[i] == y).collect();
            if members.is_empty() {
                return Err(Error::param("labels", y, "every class from 0 to the largest label must own a component"));
            }
            let w: Vec<f64> = members.iter().map(|&i| weights[i]).collect();
            classes.push(GaussianMixture::new(
                &w,
                means.select(Axis(0), &members).view(),
                covs.select(Axis(0), &members).view(),
            )?);
            class_log_weights.push(w.iter().sum::<f64>().ln());
        }
        Ok(Self { data, labels, classes, class_log_weights })
    }

    /// `data` with every component its own class (class `k` = component `k`).
    ///
    /// # Errors
    /// None for a mixture built by [`GaussianMixture::new`]; the signature
    /// matches [`LabelledMixture::new`], which it calls.
    pub fn by_component(data: GaussianMixture) -> Result<Self> {
        let labels = (0..data.n_components()).collect();
        Self::new(data, labels)
    }

    /// The whole data distribution `p_0(x)`.
    pub fn data(&self) -> &GaussianMixture {
        &self.data
    }

    /// The class of each component.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }

    /// Number of classes.
    pub fn n_classes(&self) -> usize {
        self.classes.len()
    }

    /// The class prior `p(y)` (sums to 1).
    pub fn class_weights(&self) -> Array1<f64> {
        self.class_log_weights.iter().map(|l| l.exp()).collect()
    }

    /// The class-conditional data `p_0(x | y)`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a class out of range.
    pub fn class_data(&self, class: usize) -> Result<&GaussianMixture> {
        check_class(class, self.n_classes())?;
        Ok(&self.classes[class])
    }

    /// The score of `p_t(x | class)` (of `p_t(x)` for `None`) for each row of
    /// `x`, for the marginal at `(a, sigma)`.
    ///
    /// # Errors
    /// A class out of range, a shape mismatch, or a singular marginal.
    pub fn class_score_at<F: Element>(
        &self,
        x: &Array2<F>,
        a: f64,
        sigma: f64,
        class: Option<usize>,
    ) -> Result<Array2<F>>
    where
        StandardNormal: rand_distr::Distribution<F>,
    {
        match class {
            None => self.data.score_at(x, a, sigma),
            Some(y) => self.class_data(y)?.score_at(x, a, sigma),
        }
    }

    /// `grad_x log p_t(class | x) = s_t(x | class) - s_t(x)` for each row of `x`,
    /// for the marginal at `(a, sigma)`.
    ///
    /// # Errors
    /// As [`LabelledMixture::class_score_at`].
    pub fn classifier_grad_at<F: Element>(&self, x: &Array2<F>, a: f64, sigma: f64, class: usize) -> Result<Array2<F>>
    where
        StandardNormal: rand_distr::Distribution<F>,
    {
        let mut g = self.class_score_at(x, a, sigma, Some(class))?;
        g.axpby(1.0, -1.0, &self.data.score_at(x, a, sigma)?)?;
        Ok(g)
    }

    /// `ln p_t(y | x)` for each row of `x` (shape (n, d)) and class, shape
    /// (n, C), for the marginal at `(a, sigma)` (`(1, 0)`: the clean data,
    /// when every covariance is positive definite).
    ///
    /// # Errors
    /// A shape mismatch, or a singular marginal.
    pub fn class_log_probs_at(&self, x: ArrayView2<f64>, a: f64, sigma: f64) -> Result<Array2<f64>> {
        let mut out = Array2::zeros((x.nrows(), self.n_classes()));
        for (y, (class, lw)) in self.classes.iter().zip(&self.class_log_weights).enumerate() {
            let mut col = out.column_mut(y);
            col.assign(&class.log_density(x, a, sigma)?);
            col += *lw;
        }
        for mut row in out.rows_mut() {
            let m = row.iter().fold(f64::NEG_INFINITY, |m, v| m.max(*v));
            if m.is_finite() {
                let log_z = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
                row -= log_z;
            }
        }
        Ok(out)
    }

    /// `p_t(y | x)`, shape (n, C): the exponential of
    /// [`LabelledMixture::class_log_probs_at`]; each row sums to 1.
    ///
    /// # Errors
    /// As [`LabelledMixture::class_log_probs_at`].
    pub fn class_probs_at(&self, x: ArrayView2<f64>, a: f64, sigma: f64) -> Result<Array2<f64>> {
        Ok(self.class_log_probs_at(x, a, sigma)?.mapv(f64::exp))
    }

    /// `n` exact samples of the data and their classes (the same draws as
    /// [`GaussianMixture::sample`] of [`LabelledMixture::data`] with the same `rng`).
    pub fn sample_labelled(&self, n: usize, rng: &mut Rng) -> (Array2<f64>, Vec<usize>) {
        let (x, components) = self.data.sample_with_components(n, rng);
        (x, components.into_iter().map(|k| self.labels[k]).collect())
    }
}

/// The exact class-conditional model of [`LabelledMixture`] data under an SDE:
/// the unconditional [`Score`], the [`ConditionalScore`] and the exact
/// [`ClassifierGradient`], at every `t` (the oracle of guidance tests).
#[derive(Debug, Clone)]
pub struct ExactConditional<Q: Sde> {
    data: LabelledMixture,
    sde: Q,
}

impl<Q: Sde> ExactConditional<Q> {
    /// The exact model of `data` under `sde`.
    pub fn new(data: LabelledMixture, sde: Q) -> Self {
        Self { data, sde }
    }

    /// The labelled data.
    pub fn data(&self) -> &LabelledMixture {
        &self.data
    }

    /// The SDE.
    pub fn sde(&self) -> &Q {
        &self.sde
    }

    /// Number of classes.
    pub fn n_classes(&self) -> usize {
        self.data.n_classes()
    }

    /// `p_t(y | x)` for each row of `x`, shape (n, C).
    ///
    /// # Errors
    /// A time outside the SDE's range, a shape mismatch.
    pub fn class_probs(&self, x: ArrayView2<f64>, t: f64) -> Result<Array2<f64>> {
        self.sde.check_time(t)?;
        self.data.class_probs_at(x, self.sde.alpha(t), self.sde.sigma(t))
    }
}

impl<Q: Sde, F: Element> Score<Array2<F>> for ExactConditional<Q>
where
    StandardNormal: rand_distr::Distribution<F>,
{
    fn score(&self, x: &Array2<F>, t: f64) -> Result<Array2<F>> {
        self.score_cond(x, t, None)
    }
}

impl<Q: Sde, F: Element> ConditionalScore<Array2<F>> for ExactConditional<Q>
where
    StandardNormal: rand_distr::Distribution<F>,
{
    fn score_cond(&self, x: &Array2<F>, t: f64, class: Option<usize>) -> Result<Array2<F>> {
        self.sde.check_time(t)?;
        self.data.class_score_at(x, self.sde.alpha(t), self.sde.sigma(t), class)
    }

    fn n_classes(&self) -> usize {
        self.data.n_classes()
    }
}

impl<Q: Sde, F: Element> ClassifierGradient<Array2<F>> for ExactConditional<Q>
where
    StandardNormal: rand_distr::Distribution<F>,
{
    fn grad_log_prob(&self, x: &Array2<F>, t: f64, class: usize) -> Result<Array2<F>> {
        self.sde.check_time(t)?;
        self.data.classifier_grad_at(x, self.sde.alpha(t), self.sde.sigma(t), class)
    }

    fn n_classes(&self) -> usize {
        self.data.n_classes()
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn labels_must_cover_the_classes() {
        let data = GaussianMixture::ring(3, 1.0, 0.3).unwrap();
        assert!(matches!(LabelledMixture::new(data.clone(), vec![0, 1]), Err(Error::ShapeMismatch { .. })));
        assert!(matches!(LabelledMixture::new(data.clone(), vec![0, 2, 2]), Err(Error::InvalidParameter { .. })));
        let m = LabelledMixture::new(data.clone(), vec![1, 0, 1]).unwrap();
        assert_eq!(m.n_classes(), 2);
        let w = m.class_weights();
        assert!((w[0] - 1.0 / 3.0).abs() < 1e-14 && (w[1] - 2.0 / 3.0).abs() < 1e-14, "{w}");
        assert_eq!(m.class_data(0).unwrap().n_components(), 1);
        assert!(m.class_data(2).is_err());
        let b = LabelledMixture::by_component(data).unwrap();
        assert_eq!(b.n_classes(), 3);
        assert_eq!(b.labels(), &[0, 1, 2]);
    }

    #[test]
    fn class_probs_are_normalised() {
        let m = LabelledMixture::new(GaussianMixture::ring(4, 1.0, 0.5).unwrap(), vec![0, 1, 1, 0]).unwrap();
        let x = array![[0.3, -0.2], [5.0, 5.0], [-40.0, 3.0]];
        let p = m.class_probs_at(x.view(), 0.7, 0.4).unwrap();
        for row in p.rows() {
            approx::assert_abs_diff_eq!(row.sum(), 1.0, epsilon = 1e-12);
        }
    }
}
