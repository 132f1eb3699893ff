//! `scoresde train --process flow` (rectified flow with a velocity network) end to end:
//! the process is stored in the sidecar, `sample` with two solvers and `eval` use it
//! without being told, resuming keeps it, and bad process options are clear errors.
//! Small sizes, CPU.

mod common;
use common::*;

fn sidecar(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("model.json")).unwrap()).unwrap()
}

#[test]
fn train_flow_then_sample_eval_and_resume() {
    let dir = tmp("flow");
    let mut args = vec!["train", "--process", "flow", "--data", "mixture", "--steps", "30", "--out", s(&dir)];
    args.extend_from_slice(SMALL);
    ok(&args);
    let meta = sidecar(&dir);
    assert_eq!(meta["sde"]["kind"], "flow", "{meta}");
    assert_eq!(meta["sde"]["t_max"], 0.999, "{meta}");
    assert_eq!(meta["net"]["parameterization"], "flow", "{meta}");

    for solver in ["ode-euler", "flow-em:0.5"] {
        let text =
            ok(&["sample", "--model", s(&dir), "--solver", solver, "--steps", "8", "-n", "200", "--device", "cpu"]);
        let file = format!("samples-{}-8-uniform-seed0.npy", solver.replace(':', "_"));
        assert!(text.contains(&file), "{text}");
        let x = scoresde::data::load_npy(dir.join(&file)).unwrap();
        assert_eq!(x.dim(), (200, 2));
        assert!(x.iter().all(|v| v.is_finite()), "{solver}");
    }
    let text = ok(&["eval", "--model", s(&dir)]);
    assert!(text.contains("sliced W2"), "{text}");

    // Resuming reloads the process from the checkpoint; asking for another one is refused.
    let resume =
        ["train", "--resume", "--steps", "40", "--out", s(&dir), "--data", "mixture", "--n", "600", "--device", "cpu"];
    ok(&resume);
    let meta = sidecar(&dir);
    assert_eq!((meta["step"].as_u64(), &meta["sde"]["kind"]), (Some(40), &serde_json::json!("flow")));
    let mut vp = resume.to_vec();
    vp.extend_from_slice(&["--process", "vp"]);
    let err = fails(&vp);
    assert!(err.contains("--process vp (the checkpoint's: flow)"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_process_options_are_clear_errors() {
    let dir = tmp("flow-bad");
    let train = |extra: &[&str]| {
        let mut a = vec!["train", "--steps", "2", "--out", s(&dir)];
        a.extend_from_slice(SMALL);
        a.extend_from_slice(extra);
        a.iter().map(|x| x.to_string()).collect::<Vec<_>>()
    };
    let args = train(&["--process", "diffusion"]);
    let out = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("diffusion") && err.contains("flow"), "{err}");
    for (extra, want) in [
        (&["--process", "flow", "--flow-t-max", "1"][..], "--flow-t-max 1: must be in (0.001, 1)"),
        (&["--process", "flow", "--flow-t-max", "0.0001"][..], "--flow-t-max 0.0001"),
        (&["--process", "flow", "--beta-max", "10"][..], "--beta-max applies to --process vp only"),
        (&["--flow-t-max", "0.99"][..], "--flow-t-max applies to --process flow only"),
    ] {
        let args = train(extra);
        let err = fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(err.contains(want), "{extra:?}: {err}");
    }
    assert!(!dir.join("model.json").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
