//! libtorch links and loads at run time (through the rpath set by build.rs):
//! a small matmul on the CPU gives the known product.

use tch::{Device, Kind, Tensor};

#[test]
fn cpu_matmul() {
    let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).view([2, 3]);
    let b = Tensor::from_slice(&[7.0f32, 8.0, 9.0, 10.0, 11.0, 12.0]).view([3, 2]);
    let c = a.matmul(&b);
    assert_eq!(c.size(), [2, 2]);
    assert_eq!(c.device(), Device::Cpu);
    assert_eq!(c.kind(), Kind::Float);
    let got = Vec::<f32>::try_from(c.contiguous().view([-1])).unwrap();
    assert_eq!(got, [58.0, 64.0, 139.0, 154.0]);
}

#[test]
fn device_select_cpu_runs_tensors() {
    let device = scoresde::device::select("cpu").unwrap();
    let x = Tensor::ones([3, 3], (Kind::Double, device));
    let s = x.matmul(&x).sum(Kind::Double).double_value(&[]);
    assert_eq!(s, 27.0);
}
