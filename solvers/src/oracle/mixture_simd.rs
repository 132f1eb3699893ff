//! The chunked row kernel of [`GaussianMixture`](super::GaussianMixture):
//! log-densities and scores of up to [`CHUNK`] rows at a time in a
//! structure-of-arrays layout, compiled twice (portable and, on x86_64, with
//! AVX2, chosen at run time).

use ndarray::ArrayView2;
use rand_distr::StandardNormal;

use crate::state::Element;

/// Rows per chunk of the mixture kernel.
pub(super) const CHUNK: usize = 256;

/// Constants of one component's marginal at a given `(a, sigma)`, computed
/// in f64 and stored in the element type the kernel computes in.
pub(super) struct Prepared<C> {
    /// `a mu`.
    pub(super) shift: Vec<C>,
    /// `1 / (a^2 lambda_j + sigma^2)` per eigen-direction.
    pub(super) inv_var: Vec<C>,
    /// `ln w - 1/2 sum_j ln v_j - d/2 ln(2 pi)`.
    pub(super) log_norm: C,
    /// Eigenvectors, row-major `U[i][j]`; `None` for a diagonal covariance.
    pub(super) rotation: Option<Vec<C>>,
}

pub(super) fn cast<C: Element>(v: f64) -> C
where
    StandardNormal: rand_distr::Distribution<C>,
{
    C::from_f64(v).unwrap_or_else(C::nan)
}

/// Per-thread scratch buffers of the chunk kernel (no allocation per row),
/// each laid out as `[component or dimension][row in chunk]`.
pub(super) struct Scratch<C> {
    pub(super) x: Vec<C>,
    pub(super) y: Vec<C>,
    pub(super) lp: Vec<C>,
    pub(super) m: Vec<C>,
    pub(super) z: Vec<C>,
    pub(super) acc: Vec<C>,
}

impl<C: num_traits::Zero + Clone> Scratch<C> {
    pub(super) fn new(d: usize, k: usize) -> Self {
        let zeros = |len: usize| vec![C::zero(); len];
        Self {
            x: zeros(d * CHUNK),
            y: zeros(k * d * CHUNK),
            lp: zeros(k * CHUNK),
            m: zeros(CHUNK),
            z: zeros(CHUNK),
            acc: zeros(CHUNK),
        }
    }
}

/// Log-densities (left in `s.m`) and, when `out` is given, scores of a
/// chunk of at most [`CHUNK`] rows, using AVX2 when the CPU has it (the
/// same code compiled twice; chosen at run time, so one binary runs anywhere).
pub(super) fn chunk_kernel<F: Element>(
    dim: usize,
    x: ArrayView2<F>,
    prep: &[Prepared<F>],
    s: &mut Scratch<F>,
    out: Option<&mut ndarray::ArrayViewMut2<F>>,
) where
    StandardNormal: rand_distr::Distribution<F>,
{
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe { chunk_kernel_avx2(dim, x, prep, s, out) };
        return;
    }
    chunk_kernel_portable(dim, x, prep, s, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn chunk_kernel_avx2<F: Element>(
    dim: usize,
    x: ArrayView2<F>,
    prep: &[Prepared<F>],
    s: &mut Scratch<F>,
    out: Option<&mut ndarray::ArrayViewMut2<F>>,
) where
    StandardNormal: rand_distr::Distribution<F>,
{
    chunk_kernel_portable(dim, x, prep, s, out)
}

/// The kernel itself. Structure-of-arrays layout: every inner loop runs
/// over the rows of the chunk, so it vectorises.
#[inline(always)]
fn chunk_kernel_portable<F: Element>(
    dim: usize,
    x: ArrayView2<F>,
    prep: &[Prepared<F>],
    s: &mut Scratch<F>,
    out: Option<&mut ndarray::ArrayViewMut2<F>>,
) where
    StandardNormal: rand_distr::Distribution<F>,
{
    let (n, d) = (x.nrows(), dim);
    let (zero, half) = (F::zero(), cast::<F>(0.5));
    for ((r, j), v) in x.indexed_iter() {
        s.x[j * CHUNK + r] = *v;
    }
    s.m[..n].iter_mut().for_each(|m| *m = F::neg_infinity());
    for (k, p) in prep.iter().enumerate() {
        // Residual y = U^T (x - a mu) per eigen-direction, then whitened
        // in place to y / v (the negated component score in that basis).
        let lp = &mut s.lp[k * CHUNK..k * CHUNK + n];
        lp.iter_mut().for_each(|l| *l = p.log_norm);
        for j in 0..d {
            let y = &mut s.y[(k * d + j) * CHUNK..(k * d + j) * CHUNK + n];
            match &p.rotation {
                None => {
                    let (xj, shift) = (&s.x[j * CHUNK..j * CHUNK + n], p.shift[j]);
                    y.iter_mut().zip(xj).for_each(|(y, x)| *y = *x - shift);
                }
                Some(u) => {
                    y.iter_mut().for_each(|y| *y = zero);
                    for i in 0..d {
                        let (uij, shift) = (u[i * d + j], p.shift[i]);
                        let xi = &s.x[i * CHUNK..i * CHUNK + n];
                        y.iter_mut().zip(xi).for_each(|(y, x)| *y = *y + uij * (*x - shift));
                    }
                }
            }
            let iv = p.inv_var[j];
            for (l, y) in lp.iter_mut().zip(y.iter_mut()) {
                let w = *y * iv;
                *l = *l - half * *y * w;
                *y = w;
            }
        }
        s.m[..n].iter_mut().zip(lp.iter()).for_each(|(m, l)| *m = m.max(*l));
    }
    // Responsibilities by a stable softmax; s.m becomes the log-density.
    s.z[..n].iter_mut().for_each(|z| *z = zero);
    for k in 0..prep.len() {
        let lp = &mut s.lp[k * CHUNK..k * CHUNK + n];
        for ((l, m), z) in lp.iter_mut().zip(&s.m[..n]).zip(s.z[..n].iter_mut()) {
            *l = (*l - *m).exp_nonpositive();
            *z = *z + *l;
        }
    }
    for (m, z) in s.m[..n].iter_mut().zip(&s.z[..n]) {
        *m = *m + z.ln();
    }
    let Some(out) = out else { return };
    for j in 0..d {
        let acc = &mut s.acc[..n];
        acc.iter_mut().for_each(|a| *a = zero);
        for (k, p) in prep.iter().enumerate() {
            let w = &s.lp[k * CHUNK..k * CHUNK + n];
            match &p.rotation {
                None => {
                    let y = &s.y[(k * d + j) * CHUNK..(k * d + j) * CHUNK + n];
                    acc.iter_mut().zip(w).zip(y).for_each(|((a, w), y)| *a = *a - *w * *y);
                }
                Some(u) => {
                    for i in 0..d {
                        let uji = u[j * d + i];
                        let y = &s.y[(k * d + i) * CHUNK..(k * d + i) * CHUNK + n];
                        acc.iter_mut().zip(w).zip(y).for_each(|((a, w), y)| *a = *a - uji * *w * *y);
                    }
                }
            }
        }
        for (r, (a, z)) in acc.iter().zip(&s.z[..n]).enumerate() {
            out[[r, j]] = *a / *z;
        }
    }
}
