//! Sharded sampling: `scoresde sample --shard K/N` draws one part of a run,
//! `scoresde merge-shards` puts the parts back together.
//!
//! Layout: a run of `-n` samples is cut into batches of `--batch` rows
//! (the last may be shorter); shard `K` of `N` takes the contiguous block of
//! batches `floor(K B / N) .. floor((K + 1) B / N)` of the `B` batches, i.e.
//! the rows `start_K .. start_{K+1}`. Every sample draws its noise from
//! `RowNoise` keyed by `(--seed, sample index, draw)`, and each batch of a
//! shard is the very batch the unsharded run with the same `--batch`
//! integrates (same rows, same size, so the same network kernels), so the
//! shards concatenated in order of `K` are that run bit for bit.
//!
//! Each shard writes `samples-...-shardKofN.npy` and a sidecar
//! `samples-...-shardKofN.json` ([`ShardMeta`]) that identifies the run: the
//! settings that decide the samples, the SHA-256 of the checkpoint file and
//! the program version. `merge-shards` refuses shards of different runs, a
//! missing or repeated shard, and a file whose shape is not the shard's.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use scoresde::data::{load_npy, NpyWriter};
use serde::{Deserialize, Serialize};

use crate::common::Status;

/// Shard `index` of `count` (0-based), as `--shard K/N` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// `K`, from 0 to `count - 1`.
    pub index: usize,
    /// `N`, at least 1.
    pub count: usize,
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Parses `K/N` (clap's value parser for `--shard`): two non-negative
/// integers, `N >= 1` and `K < N`.
pub fn parse_shard(s: &str) -> Result<Shard, String> {
    let usage = "expected K/N with 0 <= K < N, e.g. 0/4 (a Slurm array passes $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT with --array=0-3)";
    let Some((k, n)) = s.split_once('/') else { return Err(format!("`{s}`: {usage}")) };
    let number = |v: &str, what: &str| -> Result<usize, String> {
        v.trim().parse::<usize>().map_err(|_| format!("`{s}`: {what} `{v}` is not a non-negative integer; {usage}"))
    };
    let (index, count) = (number(k, "the shard index K")?, number(n, "the shard count N")?);
    if count == 0 {
        return Err(format!("`{s}`: the shard count N must be at least 1; {usage}"));
    }
    if index >= count {
        return Err(format!(
            "`{s}`: the shard index K must be below N (shards are numbered from 0: 0/{count} .. {}/{count})",
            count - 1
        ));
    }
    Ok(Shard { index, count })
}

/// The rows of `shard` in a run of `n` samples in batches of `batch`: a
/// contiguous block of whole batches (module docs).
///
/// # Errors
/// When there are fewer batches than shards, so this one would be empty.
pub fn rows(n: usize, batch: usize, shard: Shard) -> anyhow::Result<Range<usize>> {
    if batch == 0 {
        bail!("--batch 0: need at least 1 sample per batch");
    }
    let batches = n.div_ceil(batch);
    let first = |k: usize| -> usize {
        // k * batches / count without overflow (batches <= n <= 2^32, count is a usize).
        ((k as u128 * batches as u128) / shard.count as u128) as usize
    };
    let (b0, b1) = (first(shard.index), first(shard.index + 1));
    if b0 == b1 {
        bail!(
            "--shard {shard}: {n} samples in batches of {batch} make {batches} batch(es), fewer than {} shards, so shard {} would be empty: use at most {batches} shards, or a smaller --batch (at most {})",
            shard.count,
            shard.index,
            n.div_ceil(shard.count).max(1)
        );
    }
    Ok(b0 * batch..(b1 * batch).min(n))
}

/// `samples-...npy` of the whole run -> `samples-...-shardKofN.npy`.
pub fn shard_npy(whole: &Path, shard: Shard) -> PathBuf {
    let stem = whole.file_stem().and_then(|s| s.to_str()).unwrap_or("samples");
    whole.with_file_name(format!("{stem}-shard{}of{}.npy", shard.index, shard.count))
}

/// Where shard `shard` of a model in `folder` goes without `--out`: a folder
/// of its own, `folder/shardKofN`, so that the N shards (each taking its
/// output folder's lock) can run at once.
pub fn default_folder(folder: &Path, shard: Shard) -> PathBuf {
    folder.join(format!("shard{}of{}", shard.index, shard.count))
}

/// The sidecar of a shard's `.npy` file.
pub fn sidecar(npy: &Path) -> PathBuf {
    npy.with_extension("json")
}

/// What the `format` field of a shard sidecar holds.
const FORMAT: &str = "scoresde-samples-shard";
/// The sidecar layout's version.
const VERSION: u32 = 1;
/// The noise every shard of a run must share (`scoresde_solvers::RowNoise`).
pub const NOISE: &str = "row-noise-v1";

/// A shard's sidecar: which run it belongs to, and which rows it holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShardMeta {
    /// [`FORMAT`].
    pub format: String,
    /// [`VERSION`].
    pub version: u32,
    /// `K`.
    pub shard: usize,
    /// `N`.
    pub shards: usize,
    /// The rows of the whole run this shard holds, `[start, end)`.
    pub rows: [usize; 2],
    /// The whole run's: samples, batch, data dimension, and the settings
    /// that decide the samples.
    pub run: RunId,
    /// The `.npy` file's name (in the sidecar's folder).
    pub samples: String,
}

/// Everything that decides a run's samples: shards merge only when these agree.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunId {
    /// Samples of the whole run (`-n`).
    pub n: usize,
    /// Rows per batch (`--batch`, or its default).
    pub batch: usize,
    /// Values per sample.
    pub dim: usize,
    /// `--seed`.
    pub seed: u64,
    /// `--solver`.
    pub solver: String,
    /// `--steps`.
    pub steps: usize,
    /// `--grid`.
    pub grid: String,
    /// Whether the final Tweedie step ran.
    pub denoise: bool,
    /// The guidance part of the file name (empty without `--class`).
    pub guidance: String,
    /// SHA-256 of the checkpoint's weights file (model.safetensors).
    pub checkpoint_sha256: String,
    /// The checkpoint's training step.
    pub checkpoint_step: u64,
    /// The program's version (`scoresde --version`).
    pub scoresde: String,
    /// The noise source ([`NOISE`]).
    pub noise: String,
    /// Element type of the state the samples were integrated in.
    pub precision: String,
}

impl RunId {
    /// The fields in which `self` and `other` differ, as `name: a vs b`.
    fn differences(&self, other: &RunId) -> Vec<String> {
        let (a, b) = (serde_json::to_value(self).unwrap_or_default(), serde_json::to_value(other).unwrap_or_default());
        let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else { return vec!["unreadable".into()] };
        a.iter().filter(|(k, v)| b.get(*k) != Some(v)).map(|(k, v)| format!("{k}: {v} vs {}", b[k])).collect()
    }
}

impl ShardMeta {
    /// The sidecar of shard `shard` of the run `run`, holding `rows`, written next to `npy`.
    pub fn new(shard: Shard, rows: Range<usize>, run: RunId, npy: &Path) -> Self {
        Self {
            format: FORMAT.into(),
            version: VERSION,
            shard: shard.index,
            shards: shard.count,
            rows: [rows.start, rows.end],
            run,
            samples: npy.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        }
    }

    /// Writes the sidecar atomically.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        scoresde::fsutil::write_atomic(path, format!("{text}\n").as_bytes())?;
        Ok(())
    }

    /// Reads and checks a sidecar.
    fn read(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading the shard sidecar {}", path.display()))?;
        let meta: ShardMeta = serde_json::from_str(&text).with_context(|| {
            format!("{}: not a scoresde shard sidecar (from `scoresde sample --shard K/N`)", path.display())
        })?;
        if meta.format != FORMAT || meta.version != VERSION {
            bail!(
                "{}: format {} version {}, this build reads {FORMAT} version {VERSION}",
                path.display(),
                meta.format,
                meta.version
            );
        }
        let shard = Shard { index: meta.shard, count: meta.shards };
        if meta.shards == 0 || meta.shard >= meta.shards {
            bail!("{}: shard {shard} is not a valid K/N", path.display());
        }
        let want = rows(meta.run.n, meta.run.batch, shard).with_context(|| path.display().to_string())?;
        if meta.rows != [want.start, want.end] {
            bail!(
                "{}: holds rows {}..{}, but shard {shard} of {} samples in batches of {} is rows {}..{}",
                path.display(),
                meta.rows[0],
                meta.rows[1],
                meta.run.n,
                meta.run.batch,
                want.start,
                want.end
            );
        }
        Ok(meta)
    }
}

/// The SHA-256 (lower-case hex) of the file at `path`, read in pieces.
pub fn file_sha256(path: &Path) -> anyhow::Result<String> {
    use sha2::{Digest as _, Sha256};
    let mut file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut file, &mut h).with_context(|| format!("reading {}", path.display()))?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Options of `scoresde merge-shards`.
#[derive(clap::Args, Debug, Clone)]
pub struct MergeArgs {
    /// The shards: their sidecars (`samples-...-shardKofN.json`), their `.npy`
    /// files, or folders (every shard sidecar in them).
    #[arg(required = true, value_name = "SHARD")]
    pub shards: Vec<PathBuf>,
    /// The merged `.npy` file [default: the whole run's file name (as `sample`
    /// without --shard names it), in the folder above the first shard's folder:
    /// the model's folder for shards written to their default folders].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace an existing output file.
    #[arg(long)]
    pub force: bool,
}

/// The sidecars `arg` names: itself, the `.json` beside a `.npy`, or every
/// `*-shard*of*.json` in a folder.
fn sidecars_of(arg: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if arg.is_dir() {
        let mut found: Vec<PathBuf> = std::fs::read_dir(arg)
            .with_context(|| format!("reading {}", arg.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                name.ends_with(".json") && name.contains("-shard") && !name.starts_with('.')
            })
            .collect();
        found.sort();
        if found.is_empty() {
            bail!(
                "{}: no shard sidecars (samples-...-shardKofN.json from `scoresde sample --shard K/N`) in this folder",
                arg.display()
            );
        }
        return Ok(found);
    }
    let json = if arg.extension().and_then(|e| e.to_str()) == Some("npy") { sidecar(arg) } else { arg.to_path_buf() };
    if !json.is_file() {
        bail!("{}: no such shard sidecar (pass the .json or .npy a `scoresde sample --shard K/N` run wrote, or its folder)", json.display());
    }
    Ok(vec![json])
}

/// `scoresde merge-shards`: checks that the shards are all of one run, each
/// once, with the rows their sidecars say, and writes the whole run's samples
/// in order (atomically).
pub fn merge(a: &MergeArgs) -> anyhow::Result<Status> {
    let mut paths = Vec::new();
    for arg in &a.shards {
        paths.extend(sidecars_of(arg)?);
    }
    let mut shards: BTreeMap<usize, (PathBuf, ShardMeta)> = BTreeMap::new();
    let mut first: Option<(PathBuf, ShardMeta)> = None;
    for path in paths {
        let meta = ShardMeta::read(&path)?;
        if let Some((p0, m0)) = &first {
            if m0.shards != meta.shards {
                bail!(
                    "{} is shard {}/{} but {} is shard {}/{}: shards of one run share N",
                    path.display(),
                    meta.shard,
                    meta.shards,
                    p0.display(),
                    m0.shard,
                    m0.shards
                );
            }
            let diff = m0.run.differences(&meta.run);
            if !diff.is_empty() {
                bail!(
                    "{} and {} are shards of different runs ({}): merge only the shards of one `scoresde sample` command line",
                    p0.display(),
                    path.display(),
                    diff.join("; ")
                );
            }
        }
        // The same file named twice (a folder and its file, say) counts once.
        let canonical = path.canonicalize().unwrap_or_else(|_| path.clone());
        if let Some((other, _)) = shards.get(&meta.shard) {
            if other.canonicalize().unwrap_or_else(|_| other.clone()) == canonical {
                continue;
            }
            bail!("shard {}/{} is given twice: {} and {}", meta.shard, meta.shards, other.display(), path.display());
        }
        if first.is_none() {
            first = Some((path.clone(), meta.clone()));
        }
        shards.insert(meta.shard, (path, meta));
    }
    let Some((first_path, first)) = first else { bail!("no shards given") };
    let missing: Vec<String> =
        (0..first.shards).filter(|k| !shards.contains_key(k)).map(|k| format!("{k}/{}", first.shards)).collect();
    if !missing.is_empty() {
        bail!(
            "missing shard(s) {} of the run of {} (found {}): run `scoresde sample ... --shard K/N` for them first",
            missing.join(", "),
            first_path.display(),
            shards.keys().map(|k| format!("{k}/{}", first.shards)).collect::<Vec<_>>().join(", ")
        );
    }
    // The default: next to the shards' folders (the model's folder when the
    // shards went to their default folders), where the unsharded run writes.
    let shard_folder = first_path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let folder = shard_folder.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let out = a.out.clone().unwrap_or_else(|| {
        let name = first.samples.rsplit_once("-shard").map(|(stem, _)| format!("{stem}.npy"));
        folder.join(name.unwrap_or_else(|| "samples-merged.npy".into()))
    });
    let _lock = crate::common::lock_folder(
        "--out",
        out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")),
    )?;
    crate::common::refuse_existing(std::slice::from_ref(&out), a.force)?;
    let run = &first.run;
    let mut writer = NpyWriter::create(&out, run.n as u64, run.dim)?;
    for (path, meta) in shards.values() {
        let npy = path.with_file_name(&meta.samples);
        let x = load_npy(&npy).with_context(|| format!("shard {}/{} ({})", meta.shard, meta.shards, path.display()))?;
        let want = (meta.rows[1] - meta.rows[0], run.dim);
        if x.dim() != want {
            bail!(
                "{}: {} x {} samples, but shard {}/{} of this run holds {} x {} (rows {}..{} of {})",
                npy.display(),
                x.nrows(),
                x.ncols(),
                meta.shard,
                meta.shards,
                want.0,
                want.1,
                meta.rows[0],
                meta.rows[1],
                run.n
            );
        }
        writer.append(x.view())?;
    }
    writer.finish()?;
    println!("merged {} shards ({} samples of {} values) into {}", first.shards, run.n, run.dim, out.display());
    Ok(Status::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_specs_parse_or_say_why_not() {
        assert_eq!(parse_shard("0/1"), Ok(Shard { index: 0, count: 1 }));
        assert_eq!(parse_shard("3/4"), Ok(Shard { index: 3, count: 4 }));
        for (bad, says) in [
            ("4/4", "must be below N"),
            ("1/0", "at least 1"),
            ("0/0", "at least 1"),
            ("1", "expected K/N"),
            ("a/2", "the shard index K `a`"),
            ("1/b", "the shard count N `b`"),
            ("-1/2", "not a non-negative integer"),
            ("1/2/3", "the shard count N `2/3`"),
            ("", "expected K/N"),
        ] {
            let e = parse_shard(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn shards_are_contiguous_blocks_of_whole_batches_covering_the_run() {
        for (n, batch, count) in [(10, 3, 2), (10, 3, 4), (300, 50, 3), (7, 7, 1), (1000, 1, 7), (5, 2, 3)] {
            let mut next = 0;
            for index in 0..count {
                let r = rows(n, batch, Shard { index, count }).unwrap();
                assert_eq!(r.start, next, "{n} {batch} {count}");
                assert!(r.end > r.start);
                assert_eq!(r.start % batch, 0, "a shard starts on a batch boundary");
                assert!(r.end == n || r.end % batch == 0);
                next = r.end;
            }
            assert_eq!(next, n);
        }
        // 10 rows in batches of 3: batches 0..4, two shards of two batches.
        assert_eq!(rows(10, 3, Shard { index: 1, count: 2 }).unwrap(), 6..10);
        let e = rows(10, 5, Shard { index: 0, count: 3 }).unwrap_err().to_string();
        assert!(e.contains("2 batch(es), fewer than 3 shards") && e.contains("at most 4"), "{e}");
    }
}
