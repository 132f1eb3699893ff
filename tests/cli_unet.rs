//! `scoresde train --net unet` and `sample` on a tiny synthetic 8x8 image
//! set, end to end on the CPU: the parameter count printed, the image grid
//! and the progressive-denoising grid written, the samples file flat
//! `[n, C*H*W]`, and `--resume` refusing another U-Net configuration.

use std::path::Path;

mod common;
use common::*;

/// The tiles of an image grid: the share of pixels that are neither the
/// white background nor a title's grey anti-aliasing, i.e. black or white
/// image pixels inside the tiles, is substantial.
fn assert_image_grid(path: &Path, min: (u32, u32)) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgb8();
    assert!(img.width() >= min.0 && img.height() >= min.1, "{}: {:?}", path.display(), img.dimensions());
    let grey = img.pixels().filter(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2]).count();
    assert_eq!(grey as u32, img.width() * img.height(), "grey-scale images draw grey pixels only");
    let dark = img.pixels().filter(|p| p.0[0] < 128).count() as f64 / (img.width() * img.height()) as f64;
    assert!(dark > 0.2, "{}: only {:.0}% dark pixels: no image tiles?", path.display(), 100.0 * dark);
}

#[test]
fn train_and_sample_a_tiny_unet() {
    let dir = tmp("pipeline");
    let data = dir.join("bars.npy");
    scoresde::data::save_npy(&data, &bars(120)).unwrap();
    let out = dir.join("run");
    let train = [
        "train",
        "--net",
        "unet",
        "--data",
        s(&data),
        "--image-shape",
        "1,8,8",
        "--base-channels",
        "8",
        "--channel-mults",
        "1,2",
        "--groups",
        "4",
        "--attn",
        "4",
        "--steps",
        "6",
        "--batch",
        "16",
        "--device",
        "cpu",
        "--out",
        s(&out),
    ];
    let text = ok(&train);
    assert!(text.contains("U-Net on 1x8x8 images") && text.contains(" parameters)"), "{text}");
    let sidecar: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("model.json")).unwrap()).unwrap();
    assert_eq!(sidecar["net"]["arch"]["kind"], "unet", "{sidecar}");
    assert_eq!(sidecar["net"]["arch"]["base"], 8);

    let text = ok(&[
        "sample",
        "--model",
        s(&out),
        "--solver",
        "ancestral",
        "--steps",
        "5",
        "-n",
        "16",
        "--trajectory",
        "--device",
        "cpu",
    ]);
    assert!(text.contains("first 16 samples, 1x8x8"), "{text}");
    let samples = scoresde::data::load_npy(out.join("samples-ancestral-5-uniform-seed0.npy")).unwrap();
    assert_eq!(samples.dim(), (16, 64), "samples are flat rows of C*H*W pixels");
    assert!(samples.iter().all(|v| v.is_finite()));
    // 8 tiles of 64 px per row; 2 rows of tiles under a title.
    assert_image_grid(&out.join("samples-ancestral-5-uniform-seed0.png"), (8 * 66, 2 * 66));
    // 8 samples by 6 or 7 times.
    assert_image_grid(&out.join("trajectory-ancestral-5-uniform-seed0.png"), (6 * 66, 8 * 66));

    // The training's U-Net settings cannot change on resume.
    let mut resume = train.to_vec();
    resume[8] = "16";
    resume.push("--resume");
    let out = run(&resume);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--base-channels 16 (the checkpoint's: 8)"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
