//! The U-Net through the architecture-independent machinery, on the CPU:
//! checkpoints (save, load, same outputs), bit-identical resume with dropout
//! on, classifier guidance on image-shaped states, and the x0 / v
//! parameterizations training like eps.

use std::sync::atomic::AtomicBool;

use ndarray::Array2;
use scoresde::checkpoint::{self, DataInfo};
use scoresde::model::SdeSpec;
use scoresde::net::{Head, NetConfig, Parameterization};
use scoresde::solvers::{ClassifierGradient, Score};
use scoresde::train::{TrainConfig, Trainer};
use scoresde::unet::UnetConfig;
use tch::{Device, Kind, Tensor};

mod common;
use common::{bars, data_info, one_thread, tmp};

/// Base 8, two levels (8x8 -> 4x4), attention at 4, dropout on.
fn tiny() -> NetConfig {
    NetConfig::unet(UnetConfig {
        base: 8,
        mults: vec![1, 2],
        attn: vec![4],
        dropout: 0.1,
        groups: 4,
        ..UnetConfig::small(1, 8, 8)
    })
}

fn info(d: &Array2<f64>) -> DataInfo {
    data_info("bars", d.nrows(), &[1, 8, 8])
}

fn config(steps: u64) -> TrainConfig {
    TrainConfig { steps, batch_size: 16, warmup: 2, seed: 3, ..TrainConfig::default() }
}

fn run(tr: &mut Trainer) {
    tr.run(1, 0, &AtomicBool::new(false), |_| {}, |_| Ok(())).unwrap();
}

#[test]
fn resumed_unet_equals_uninterrupted_and_checkpoint_keeps_the_score() {
    one_thread();
    let dir = tmp("resume");
    let d = bars(64);
    let mut full = Trainer::new(tiny(), SdeSpec::default(), config(6), &d, Device::Cpu).unwrap();
    assert_eq!(full.net().num_params() as usize, tiny().num_params());
    run(&mut full);

    let mut first = Trainer::new(tiny(), SdeSpec::default(), config(3), &d, Device::Cpu).unwrap();
    run(&mut first);
    let ckpt = dir.join("model");
    checkpoint::save(&ckpt, &first, &info(&d)).unwrap();
    let loaded = checkpoint::load(&ckpt, Device::Cpu).unwrap();
    assert_eq!(loaded.meta.net, tiny(), "the U-Net's configuration is in the checkpoint");
    let mut resumed = Trainer::with_state(loaded.net, loaded.meta.sde, config(6), &d, loaded.state).unwrap();
    run(&mut resumed);
    let (a, b) = (full.state(), resumed.state());
    assert_eq!(b.step, 6);
    assert!(a.params.equal(&b.params), "weights differ after resume");
    assert!(a.ema.equal(&b.ema), "EMA differs after resume");
    assert!(a.adam_m.equal(&b.adam_m) && a.adam_v.equal(&b.adam_v), "optimiser state differs after resume");

    // Save, load: the same score, on flat and on image-shaped states.
    checkpoint::save(&ckpt, &full, &info(&d)).unwrap();
    let loaded = checkpoint::load(&ckpt, Device::Cpu).unwrap().ema_score().unwrap();
    let ours = full.ema_score().unwrap();
    let x = Tensor::randn([5, 1, 8, 8], (Kind::Float, Device::Cpu));
    let (s1, s2) = (ours.score(&x, 0.3).unwrap(), loaded.score(&x, 0.3).unwrap());
    assert_eq!(s1.size(), [5, 1, 8, 8]);
    assert!(s1.equal(&s2), "the loaded U-Net scores differently");
    assert!(loaded.score(&x.view([5, 64]), 0.3).unwrap().equal(&s2.view([5, 64])));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unet_classifier_trains_and_guides_image_states() {
    one_thread();
    let d = bars(64);
    let labels: Vec<usize> = (0..64).map(|i| i % 2).collect();
    let net = NetConfig { classes: 2, head: Head::Classifier, ..tiny() };
    let mut tr =
        Trainer::new(net, SdeSpec::default(), config(4), &d, Device::Cpu).unwrap().with_labels(&labels).unwrap();
    run(&mut tr);
    let classifier = tr.ema_classifier().unwrap();
    let x = Tensor::randn([3, 1, 8, 8], (Kind::Float, Device::Cpu));
    let g = classifier.grad_log_prob(&x, 0.5, 1).unwrap();
    assert_eq!(g.size(), [3, 1, 8, 8]);
    assert!(g.abs().sum(Kind::Float).double_value(&[]) > 0.0);
    assert!(classifier.grad_log_prob(&x, 0.5, 2).is_err(), "class 2 of 2");
}

#[test]
fn x0_and_v_parameterizations_lower_the_loss() {
    one_thread();
    let d = bars(64);
    for parameterization in [Parameterization::X0, Parameterization::V] {
        let net = NetConfig { parameterization, ..tiny() };
        let mut tr =
            Trainer::new(net, SdeSpec::default(), TrainConfig { steps: 60, ..config(60) }, &d, Device::Cpu).unwrap();
        tr.run(20, 0, &AtomicBool::new(false), |_| {}, |_| Ok(())).unwrap();
        let l = &tr.state().losses;
        assert!(l.iter().all(|(_, v)| v.is_finite()), "{parameterization:?}: {l:?}");
        assert!(l.last().unwrap().1 < l[0].1, "{parameterization:?}: {l:?}");
    }
}
