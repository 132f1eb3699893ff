//! [`State`] for `tch::Tensor` (cargo feature `tch`): every integrator runs
//! unchanged on CPU and CUDA tensors.
//!
//! Each operation is a few libtorch kernels on the tensor's own device; nothing
//! is copied to the host except the scalars that [`State::mean_sample_norm`]
//! and [`State::all_finite`] return. Coefficients arrive as `f64` and are
//! applied as scalars, so a `Float` (f32) tensor stays f32.
//!
//! Randomness: [`State::randn_like`] draws on the host from the caller's
//! [`Rng`], exactly as the ndarray backend does for an array of the same shape
//! and precision (`f64` for `Double` tensors, `f32` otherwise), and copies the
//! result to the tensor's device once. libtorch's process-wide generators are
//! never used or reseeded, so the noise depends only on the noise source's
//! seed: the same on CPU and CUDA, and independent of other threads.

use tch::{Kind, Tensor};

use crate::error::{Error, Result};
use crate::state::{fill_rows, Rng, State};
use crate::x0_guard::{check_level, interpolate, quantile_position};

fn backend(op: &'static str) -> impl Fn(tch::TchError) -> Error {
    move |e| Error::Backend { op, message: e.to_string() }
}

fn same_shape(what: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.size() == b.size() {
        Ok(())
    } else {
        Err(Error::ShapeMismatch { what, expected: dims(a), got: dims(b) })
    }
}

fn dims(t: &Tensor) -> Vec<usize> {
    t.size().into_iter().map(|d| d.max(0) as usize).collect()
}

/// `acc += c * x`, skipping the work when `c == 0`.
///
/// On the CPU this is one fused kernel, `addcmul_` with `c` as a 0-dim
/// tensor (which takes the element type of `acc`, so `c` is rounded to it
/// exactly as `mul_scalar` would): no temporary the size of `x`. Elsewhere
/// `c * x` is formed first (a CPU scalar tensor is not accepted by every
/// device kernel; the kernel count is the same there).
fn add_scaled(acc: &mut Tensor, c: f64, x: &Tensor, op: &'static str) -> Result<()> {
    if c == 0.0 {
        return Ok(());
    }
    if c == 1.0 {
        let _ = acc.f_add_(x).map_err(backend(op))?;
    } else if acc.device() == tch::Device::Cpu && acc.is_floating_point() {
        let _ = acc.f_addcmul_(x, &Tensor::from(c)).map_err(backend(op))?;
    } else {
        let _ = acc.f_add_(&x.f_mul_scalar(c).map_err(backend(op))?).map_err(backend(op))?;
    }
    Ok(())
}

impl State for Tensor {
    fn shape(&self) -> Vec<usize> {
        dims(self)
    }

    fn duplicate(&self) -> Self {
        self.copy()
    }

    fn axpby(&mut self, a: f64, b: f64, x: &Self) -> Result<()> {
        same_shape("axpby", self, x)?;
        if a != 1.0 {
            let _ = self.f_mul_scalar_(a).map_err(backend("axpby"))?;
        }
        add_scaled(self, b, x, "axpby")
    }

    fn axpbypcz(&mut self, a: f64, b: f64, x: &Self, c: f64, y: &Self) -> Result<()> {
        same_shape("axpbypcz", self, x)?;
        same_shape("axpbypcz", self, y)?;
        if a != 1.0 {
            let _ = self.f_mul_scalar_(a).map_err(backend("axpbypcz"))?;
        }
        add_scaled(self, b, x, "axpbypcz")?;
        add_scaled(self, c, y, "axpbypcz")
    }

    fn scale(&mut self, a: f64) {
        // Only fails for an undefined tensor, which no constructor here makes.
        let _ = self.f_mul_scalar_(a);
    }

    fn mean_sample_norm(&self) -> f64 {
        let n = self.size().first().copied().unwrap_or(0);
        if n == 0 || self.numel() == 0 {
            return 0.0;
        }
        self.f_reshape([n, -1])
            .and_then(|flat| flat.f_to_kind(Kind::Double))
            .and_then(|flat| flat.f_norm_scalaropt_dim(2.0, [1i64], false))
            .and_then(|norms| norms.f_mean(None::<Kind>))
            .and_then(|m| m.f_double_value(&[]))
            .unwrap_or(f64::NAN)
    }

    fn all_finite(&self) -> bool {
        if self.numel() == 0 {
            return true;
        }
        // One reduction: NaN propagates through min/max, and an infinity is the
        // min or the max. (`isfinite().all()` is two kernels and a bool tensor
        // the size of the state.)
        if self.is_floating_point() {
            if let Ok((lo, hi)) = self.f_aminmax(None, false) {
                if let (Ok(lo), Ok(hi)) = (lo.f_double_value(&[]), hi.f_double_value(&[])) {
                    return lo.is_finite() && hi.is_finite();
                }
            }
        }
        self.f_isfinite()
            .and_then(|f| f.f_all())
            .and_then(|all| all.f_int64_value(&[]))
            .map(|v| v != 0)
            .unwrap_or(false)
    }

    fn error_norm(&self, y0: &Self, y1: &Self, rtol: f64, atol: f64) -> Result<f64> {
        same_shape("error_norm", self, y0)?;
        same_shape("error_norm", self, y1)?;
        if self.numel() == 0 {
            return Ok(0.0);
        }
        let op = backend("error_norm");
        // sqrt(mean((e / (atol + rtol * max(|y0|, |y1|)))^2)), in f64, one host read.
        let scale = y0.f_abs().map_err(&op)?.f_maximum(&y1.f_abs().map_err(&op)?).map_err(&op)?;
        let scale = scale
            .f_to_kind(Kind::Double)
            .map_err(&op)?
            .f_mul_scalar(rtol)
            .map_err(&op)?
            .f_add_scalar(atol)
            .map_err(&op)?;
        let ratio = self.f_to_kind(Kind::Double).map_err(&op)?.f_div(&scale).map_err(&op)?;
        ratio
            .f_square()
            .and_then(|r| r.f_mean(Kind::Double))
            .and_then(|m| m.f_double_value(&[]))
            .map(f64::sqrt)
            .map_err(op)
    }

    /// By the tensor's kind: `f64`'s and `f32`'s epsilon, 2^-10 for half and
    /// 2^-7 for bfloat16, 2^-3 and 2^-2 for the 8-bit kinds (by their mantissa
    /// bits); 1 for integer kinds.
    fn epsilon(&self) -> f64 {
        match self.kind() {
            Kind::Double | Kind::ComplexDouble => f64::EPSILON,
            Kind::Float | Kind::ComplexFloat => f64::from(f32::EPSILON),
            Kind::Half | Kind::ComplexHalf => 2f64.powi(-10),
            Kind::BFloat16 => 2f64.powi(-7),
            Kind::Float8e4m3fn | Kind::Float8e4m3fnuz => 2f64.powi(-3),
            Kind::Float8e5m2 | Kind::Float8e5m2fnuz => 2f64.powi(-2),
            _ => 1.0,
        }
    }

    /// Sorts `|x|` per sample on the tensor's device and reads only the two order
    /// statistics of each sample back to the host.
    fn abs_quantiles(&self, p: f64) -> Result<Vec<f64>> {
        check_level(p)?;
        let op = backend("abs_quantiles");
        let b = self.size().first().copied().unwrap_or(0);
        if b == 0 {
            return Ok(Vec::new());
        }
        let flat = self.f_abs().and_then(|a| a.f_reshape([b, -1])).map_err(&op)?;
        let n = flat.size()[1] as usize;
        if n == 0 {
            return Ok(vec![0.0; b as usize]);
        }
        let (lo, hi, frac) = quantile_position(n, p);
        let (sorted, _) = flat.f_sort(1, false).map_err(&op)?;
        let column = |i: usize| -> Result<Vec<f64>> {
            let c = sorted.f_select(1, i as i64).and_then(|c| c.f_to_kind(Kind::Double)).map_err(&op)?;
            Vec::<f64>::try_from(&c.to_device(tch::Device::Cpu)).map_err(&op)
        };
        let (lo, hi) = (column(lo)?, column(hi)?);
        Ok(lo.into_iter().zip(hi).map(|(l, h)| interpolate(l, h, frac)).collect())
    }

    fn clip_samples(&mut self, bounds: &[f64], rescale: bool) -> Result<()> {
        let size = self.size();
        let n = size.first().copied().unwrap_or(0).max(0) as usize;
        if bounds.len() != n {
            return Err(Error::ShapeMismatch {
                what: "clip_samples bounds",
                expected: vec![n],
                got: vec![bounds.len()],
            });
        }
        let op = backend("clip_samples");
        let mut shape = vec![n as i64];
        shape.resize(size.len().max(1), 1);
        let b = Tensor::from_slice(bounds)
            .f_to_kind(self.kind())
            .and_then(|b| b.f_to_device(self.device()))
            .and_then(|b| b.f_reshape(shape.as_slice()))
            .map_err(&op)?;
        let neg = b.f_neg().map_err(&op)?;
        let _ = self.f_clamp_tensor_(Some(&neg), Some(&b)).map_err(&op)?;
        if rescale {
            let _ = self.f_div_(&b).map_err(&op)?;
        }
        Ok(())
    }

    fn sample_error_norms(&self, y0: &Self, y1: &Self, rtol: f64, atol: f64) -> Result<Vec<f64>> {
        same_shape("sample_error_norms", self, y0)?;
        same_shape("sample_error_norms", self, y1)?;
        let b = self.size().first().copied().unwrap_or(0);
        if b == 0 {
            return Ok(Vec::new());
        }
        let op = backend("sample_error_norms");
        let double = |t: &Tensor| t.f_to_kind(Kind::Double).and_then(|t| t.f_reshape([b, -1]));
        let (e, y0, y1) = (double(self).map_err(&op)?, double(y0).map_err(&op)?, double(y1).map_err(&op)?);
        if e.size()[1] == 0 {
            return Ok(vec![0.0; b as usize]);
        }
        // sqrt(mean_j((e / max(atol, rtol * max(|y0|, |y1|)))^2)) per row, one host read.
        let scale = y0
            .f_abs()
            .and_then(|a| a.f_maximum(&y1.f_abs()?))
            .and_then(|m| m.f_mul_scalar(rtol))
            .and_then(|m| m.f_clamp_min(atol))
            .map_err(&op)?;
        let norms = e
            .f_div(&scale)
            .and_then(|r| r.f_square())
            .and_then(|r| r.f_mean_dim(Some([1i64].as_slice()), false, Kind::Double))
            .and_then(|r| r.f_sqrt())
            .map_err(&op)?;
        Vec::<f64>::try_from(&norms.to_device(tch::Device::Cpu)).map_err(op)
    }

    fn sample_stds(&self) -> Result<Vec<f64>> {
        let b = self.size().first().copied().unwrap_or(0);
        if b == 0 {
            return Ok(Vec::new());
        }
        let op = backend("sample_stds");
        let flat = self.f_to_kind(Kind::Double).and_then(|t| t.f_reshape([b, -1])).map_err(&op)?;
        if flat.size()[1] == 0 {
            return Ok(vec![0.0; b as usize]);
        }
        let sd = flat.f_std_correction(Some([1i64].as_slice()), 0, false).map_err(&op)?;
        Vec::<f64>::try_from(&sd.to_device(tch::Device::Cpu)).map_err(op)
    }

    fn scale_samples(&mut self, factors: &[f64]) -> Result<()> {
        let size = self.size();
        let n = size.first().copied().unwrap_or(0).max(0) as usize;
        if factors.len() != n {
            return Err(Error::ShapeMismatch {
                what: "scale_samples factors",
                expected: vec![n],
                got: vec![factors.len()],
            });
        }
        let op = backend("scale_samples");
        let mut shape = vec![n as i64];
        shape.resize(size.len().max(1), 1);
        let c = Tensor::from_slice(factors)
            .f_to_kind(self.kind())
            .and_then(|c| c.f_to_device(self.device()))
            .and_then(|c| c.f_reshape(shape.as_slice()))
            .map_err(&op)?;
        let _ = self.f_mul_(&c).map_err(&op)?;
        Ok(())
    }

    fn randn_like(&self, rng: &mut Rng) -> Self {
        let shape = self.size();
        let host = if !self.is_floating_point() {
            // Non-floating tensors have no normal draws; NaNs make the run's
            // finiteness check report it instead of a panic here.
            return Tensor::full(shape, f64::NAN, (Kind::Float, self.device()));
        } else if self.kind() == Kind::Double {
            host_normals::<f64>(&dims(self), rng)
        } else {
            host_normals::<f32>(&dims(self), rng)
        };
        host.f_view(shape.as_slice())
            .and_then(|z| z.f_to_kind(self.kind()))
            .and_then(|z| z.f_to_device(self.device()))
            .unwrap_or_else(|_| Tensor::full(shape, f64::NAN, (Kind::Float, self.device())))
    }

    /// Drawn on the host (`f64` for `Double` tensors, `f32` otherwise), copied
    /// to the tensor's device once; a non-floating tensor gets `Float` normals.
    fn randn_rows_like(&self, rngs: &mut [Rng]) -> Result<Self> {
        let shape = self.size();
        let d = dims(self);
        if d.first().copied().unwrap_or(0) != rngs.len() {
            return Err(Error::ShapeMismatch {
                what: "per-row normals (one generator per sample)",
                expected: vec![rngs.len()],
                got: d,
            });
        }
        let (host, kind) = if self.kind() == Kind::Double {
            (host_rows::<f64>(&d, rngs)?, Kind::Double)
        } else {
            (host_rows::<f32>(&d, rngs)?, if self.is_floating_point() { self.kind() } else { Kind::Float })
        };
        let op = backend("randn_rows_like");
        host.f_view(shape.as_slice())
            .and_then(|z| z.f_to_kind(kind))
            .and_then(|z| z.f_to_device(self.device()))
            .map_err(op)
    }
}

/// Per-row standard normals of `shape` drawn on the host with [`fill_rows`],
/// as the ndarray backend draws them, as a flat CPU tensor.
fn host_rows<F>(shape: &[usize], rngs: &mut [Rng]) -> Result<Tensor>
where
    F: Default + Clone + Send + tch::kind::Element,
    rand_distr::StandardNormal: rand_distr::Distribution<F>,
{
    let mut values = vec![F::default(); shape.iter().product()];
    fill_rows(&mut values, rngs)?;
    Ok(Tensor::from_slice(&values))
}

/// Standard normals of `shape` drawn on the host as the ndarray backend draws
/// them, as a flat CPU tensor.
fn host_normals<F>(shape: &[usize], rng: &mut Rng) -> Tensor
where
    F: crate::state::Element + tch::kind::Element,
    rand_distr::StandardNormal: rand_distr::Distribution<F>,
{
    let z = ndarray::ArrayD::<F>::zeros(shape).randn_like(rng);
    match z.as_slice() {
        Some(flat) => Tensor::from_slice(flat),
        None => Tensor::from_slice(&z.iter().copied().collect::<Vec<F>>()),
    }
}
