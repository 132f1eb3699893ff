//! The `scoresde` program's run folders under stress: `--resume` on real
//! data, one writer per folder, SIGINT/SIGTERM (once and twice), SIGKILL at
//! random moments, and settings that conflict with the checkpoint. Small
//! sizes, CPU.

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;
use common::*;

/// [`SMALL`] without `--n`.
const SMALL_NET: &[&str] = &["--width", "16", "--depth", "1", "--batch", "64", "--device", "cpu"];

fn with_small<'a>(args: &[&'a str]) -> Vec<&'a str> {
    args.iter().chain(SMALL_NET).copied().collect()
}

/// Values with 17 significant digits: what a mean or a standard deviation
/// of real data looks like, and where a float parser that is not correctly
/// rounded goes wrong.
fn awkward_data(rows: usize, cols: usize) -> ndarray::Array2<f64> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    ndarray::Array2::from_shape_fn((rows, cols), |(_, j)| {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let u = (state >> 11) as f64 / (1u64 << 53) as f64;
        (j as f64 + 1.0) * 0.37 + u * 1.7
    })
}

/// `--resume` on a .npy file: the data are recognised although their
/// statistics have 17 significant digits (the scaling stored in the
/// checkpoint must read back bit for bit, and the data are identified by
/// their hash).
#[test]
fn resume_on_npy_data() {
    let dir = tmp("npy");
    let data = dir.join("data.npy");
    scoresde::data::save_npy(&data, &awkward_data(200, 16)).unwrap();
    let out = dir.join("run");
    ok(&with_small(&["train", "--data", s(&data), "--steps", "5", "--out", s(&out)]));
    let text = ok(&with_small(&["train", "--data", s(&data), "--resume", "--steps", "10", "--out", s(&out)]));
    assert!(text.contains("resuming from"), "{text}");
    let ckpt = scoresde::checkpoint::load(&out, tch::Device::Cpu).unwrap();
    assert_eq!(ckpt.meta.step, 10);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A training child whose stderr lines arrive on a channel.
fn spawn(args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = bin().args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits (at most 60 s) for a stderr line containing `needle`; returns it.
fn wait_line(rx: &mpsc::Receiver<String>, needle: &str, seen: &mut Vec<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).unwrap_or_else(|e| panic!("no line with {needle:?} ({e}): {seen:?}"));
        seen.push(line.clone());
        if line.contains(needle) {
            return line;
        }
    }
}

/// Everything the child wrote to stderr until it closed it.
fn rest(rx: &mpsc::Receiver<String>, seen: &mut Vec<String>) -> String {
    seen.extend(rx.iter());
    seen.join("\n")
}

fn wait_for(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(start.elapsed() < Duration::from_secs(60), "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: sending a signal to our own child process.
    let r = unsafe { libc::kill(child.id() as i32, sig) };
    assert_eq!(r, 0, "kill failed");
}

fn step_of(dir: &Path) -> u64 {
    scoresde::checkpoint::load(dir, tch::Device::Cpu).unwrap().meta.step
}

/// SIGTERM is handled like Ctrl-C: the run saves, writes its loss table and
/// curve, says how to continue, and exits 143; the command it prints works.
/// Meanwhile the folder belongs to that run: a second training into it, and
/// a sampling that would write there, fail at once naming the folder.
#[cfg(unix)]
#[test]
fn sigterm_saves_and_the_printed_command_resumes_while_the_folder_is_held() {
    let dir = tmp("term");
    let data = dir.join("data.npy");
    scoresde::data::save_npy(&data, &awkward_data(200, 3)).unwrap();
    let out = dir.join("run");
    let args = with_small(&["train", "--data", s(&data), "--steps", "1000000", "--save-every", "20", "--out", s(&out)]);
    let (child, rx) = spawn(&args);
    wait_for(&out.join("model.safetensors"));

    let err = fails(&with_small(&["train", "--steps", "5", "--force", "--out", s(&out)]));
    assert!(
        err.contains(&format!("{} is in use by another scoresde process (pid {})", out.display(), child.id())),
        "{err}"
    );
    let err = fails(&["sample", "--model", s(&out), "-n", "10", "--steps", "2", "--device", "cpu"]);
    assert!(err.contains("is in use by another scoresde process"), "{err}");
    assert_eq!(
        std::fs::read_dir(&out)
            .unwrap()
            .filter(|e| { e.as_ref().unwrap().file_name().to_string_lossy().starts_with("samples-") })
            .count(),
        0
    );

    signal(&child, libc::SIGTERM);
    let status = child.wait_with_output().unwrap().status;
    let mut seen = Vec::new();
    let text = rest(&rx, &mut seen);
    assert_eq!(status.code(), Some(143), "{text}");
    assert!(text.contains("SIGTERM: finishing the current step and saving"), "{text}");
    for f in ["loss.csv", "loss.png", "heldout.npy"] {
        assert!(out.join(f).is_file(), "{f} missing after SIGTERM");
    }
    let stopped = step_of(&out);
    let hint = text.lines().find_map(|l| l.split_once("continue with: ")).map(|(_, c)| c.to_string());
    let hint = hint.unwrap_or_else(|| panic!("no resume command: {text}"));
    assert!(hint.contains(&format!("--data {}", data.display())), "{hint}");
    // The printed command, run to a few more steps.
    let words: Vec<&str> = hint.split_whitespace().collect();
    assert_eq!(words[..2], ["scoresde", "train"], "{hint}");
    let more = (stopped + 5).to_string();
    let mut resume: Vec<&str> = words[1..].to_vec();
    resume.extend(["--steps", &more]);
    let text = ok(&resume);
    assert!(text.contains("resuming from"), "{text}");
    assert_eq!(step_of(&out), stopped + 5);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A second Ctrl-C soon after the first, while libtorch is still busy with
/// the step or the save, ends the run at once and cleanly: exit 130, no
/// crash and no libtorch error (exiting through `exit` from another thread
/// ran libtorch's destructors under the training thread: a segfault or
/// "Internal torch error" in most tries). The checkpoint still loads. The
/// network is large enough for a step to take milliseconds; the crash was
/// intermittent, hence the repetitions.
#[cfg(unix)]
#[test]
fn second_ctrl_c_exits_cleanly() {
    let dir = tmp("twice");
    let out = dir.join("run");
    let net = ["--width", "256", "--depth", "3", "--batch", "1024", "--n", "2000", "--device", "cpu"];
    let first: Vec<&str> = ["train", "--steps", "2", "--out", s(&out)].iter().chain(&net).copied().collect();
    ok(&first);
    for (i, pause_us) in [1000u64, 2000, 4000, 8000, 500].into_iter().enumerate() {
        let mut args = vec!["train", "--resume", "--steps", "1000000", "--save-every", "0", "--out", s(&out)];
        args.extend(net);
        let before = step_of(&out);
        let (child, rx) = spawn(&args);
        let mut seen = Vec::new();
        wait_line(&rx, "training ", &mut seen);
        std::thread::sleep(Duration::from_millis(500));
        signal(&child, libc::SIGINT);
        std::thread::sleep(Duration::from_micros(pause_us));
        signal(&child, libc::SIGINT);
        let status = child.wait_with_output().unwrap().status;
        let text = rest(&rx, &mut seen);
        assert_eq!(status.code(), Some(130), "try {i}: {status:?}\n{text}");
        assert!(!text.contains("torch error") && !text.contains("panicked"), "try {i}: {text}");
        assert!(step_of(&out) >= before, "try {i}: the checkpoint went back");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--resume` takes the network and settings from the checkpoint; an option
/// given on the command line with another value is an error naming it, the
/// same value or no value is fine.
#[test]
fn resume_refuses_conflicting_settings() {
    let dir = tmp("conflict");
    ok(&with_small(&["train", "--n", "200", "--steps", "5", "--out", s(&dir)]));
    let base = ["train", "--n", "200", "--resume", "--steps", "8", "--device", "cpu", "--out", s(&dir)];
    let with = |extra: &[&'static str]| -> Vec<&str> { base.iter().chain(extra).copied().collect() };
    let err = fails(&with(&["--width", "64", "--depth", "1", "--activation", "relu", "--lr", "0.002"]));
    assert!(err.contains("--width 64 (the checkpoint's: 16)"), "{err}");
    assert!(err.contains("--activation relu (the checkpoint's: silu)"), "{err}");
    assert!(!err.contains("--depth") && !err.contains("--lr"), "same values are fine: {err}");
    let err = fails(&with(&["--embedding", "fourier", "--batch", "32"]));
    assert!(err.contains("--embedding fourier") && err.contains("--batch 32 (the checkpoint's: 64)"), "{err}");
    assert_eq!(step_of(&dir), 5, "a refused resume writes nothing");
    ok(&with(&["--width", "16", "--batch", "64"]));
    assert_eq!(step_of(&dir), 8);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An operating-system error is reported once, and an --out that is a file
/// is named as such.
#[test]
fn os_errors_once_and_out_that_is_a_file() {
    let dir = tmp("oserr");
    let err = fails(&["sample", "--model", s(&dir.join("none")), "--device", "cpu"]);
    assert_eq!(err.matches("no such run folder or checkpoint").count(), 1, "{err}");
    assert!(!dir.join("none").exists(), "a failed sample creates no folder");
    // A run folder without its checkpoint: the OS's error, once.
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    let err = fails(&["sample", "--model", s(&dir.join("empty")), "--device", "cpu"]);
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");
    let file = dir.join("file");
    std::fs::write(&file, b"x").unwrap();
    let err = fails(&with_small(&["train", "--n", "200", "--steps", "2", "--out", s(&file)]));
    assert!(err.contains(&format!("--out {} is a file, not a folder", file.display())), "{err}");
    let sub = file.join("run");
    let err = fails(&with_small(&["train", "--n", "200", "--steps", "2", "--out", s(&sub)]));
    assert!(err.contains(&format!("{} is a file, not a folder", file.display())), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// SIGKILL at pseudo-random moments (fixed seed): whatever the moment, the
/// folder holds a checkpoint that loads (or none yet), it never goes back,
/// the killed run's lock does not block the next, `--resume` goes on from
/// it, and the temporaries of killed writes are cleared.
#[cfg(unix)]
#[test]
fn sigkill_at_random_moments_never_loses_the_checkpoint() {
    let dir = tmp("kill");
    let out = dir.join("run");
    let mut state = 0x853c_49e6_748f_ea9bu64;
    let mut last = 0u64;
    for i in 0..10 {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let delay = Duration::from_millis(150 + (state >> 33) % 1200);
        let resume = out.join("model.safetensors").exists();
        let mut args = with_small(&["train", "--n", "200", "--steps", "1000000", "--save-every", "3"]);
        args.extend(["--out", s(&out), if resume { "--resume" } else { "--force" }]);
        let mut child = bin().args(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        // The moment counts from when the run holds its folder (its pid in the
        // lock file: libtorch loaded, data ready), so a slow start on a loaded
        // machine does not turn every try into a kill before training.
        let lock = out.join(".scoresde.lock");
        let started = std::time::Instant::now();
        while std::fs::read_to_string(&lock).ok().and_then(|t| t.trim().parse::<u32>().ok()) != Some(child.id())
            && started.elapsed() < Duration::from_secs(120)
            && child.try_wait().unwrap().is_none()
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(delay);
        signal(&child, libc::SIGKILL);
        let status = child.wait().unwrap();
        assert!(status.code().is_none(), "try {i}: the run ended by itself ({status:?}) before the kill");
        if out.join("model.safetensors").exists() {
            let step = scoresde::checkpoint::load(&out, tch::Device::Cpu)
                .unwrap_or_else(|e| panic!("try {i} (killed after {delay:?}): {e}"))
                .meta
                .step;
            assert!(step >= last, "try {i}: the checkpoint went back from step {last} to {step}");
            last = step;
        }
    }
    assert!(last > 0, "no checkpoint was ever saved");
    // A temporary as a killed write leaves it; the next writer clears it.
    let stale = out.join(".model.safetensors.4000000000-7.tmp");
    std::fs::write(&stale, b"torn").unwrap();
    let more = (last + 6).to_string();
    let mut args = with_small(&["train", "--n", "200", "--resume", "--steps", &more, "--out", s(&out)]);
    args.extend(["--save-every", "3"]);
    ok(&args);
    assert_eq!(step_of(&out), last + 6);
    let temps: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(temps.is_empty(), "temporaries left: {temps:?}");
    ok(&["sample", "--model", s(&out), "-n", "10", "--steps", "5", "--device", "cpu"]);
    std::fs::remove_dir_all(&dir).unwrap();
}
