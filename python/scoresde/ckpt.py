"""scoresde's checkpoint format (src/checkpoint.rs), read and written from PyTorch.

`NAME.safetensors` holds F32 tensors `model.<name>` (weights), `ema.<name>` (their EMA),
`adam.m`, `adam.v` (Adam's moments, flat in scoresde's layout) and `embedding.freqs`; its
header metadata key `scoresde` holds the sidecar JSON (format, net, sde, train, step, data,
losses), which is also written to `NAME.json` (second; loading reads only the weights file).
Both files are written atomically: a temporary file in the same folder, flushed, renamed.
"""
import json
import os
import tempfile

import torch
from safetensors import safe_open
from safetensors.torch import save as st_save

FORMAT_VERSION = 1
META_KEY = "scoresde"


class CheckpointError(Exception):
    """A file that is not a readable scoresde checkpoint of the expected kind."""


def paths(spec):
    """(weights, sidecar) of a checkpoint given as DIR (meaning DIR/model), NAME, NAME.safetensors or NAME.json."""
    spec = os.fspath(spec)
    if os.path.isdir(spec):
        stem = os.path.join(spec, "model")
    else:
        root, ext = os.path.splitext(spec)
        stem = root if ext in (".safetensors", ".json") else spec
    return stem + ".safetensors", stem + ".json"


def write_atomic(path, data):
    """Writes bytes to `path` through a flushed temporary file in the same folder and a rename."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def save(spec, meta, net, params, ema, adam_m, adam_v):
    """Writes a checkpoint: `params`, `ema` (name -> tensor, scoresde names) and the flat Adam
    moments of network `net` (for its frequencies), with the sidecar dict `meta`. Refuses
    non-finite weights so a diverged run never overwrites a good checkpoint."""
    weights_path, sidecar_path = paths(spec)
    tensors = {}
    for prefix, named in (("model", params), ("ema", ema)):
        for name in net.flat_names():
            t = named[name].detach().to("cpu", torch.float32).clone()  # own storage (not a view of a flat vector)
            if not torch.isfinite(t).all():
                raise CheckpointError(f"{weights_path}: refusing to save non-finite {prefix} weights ({name})")
            tensors[f"{prefix}.{name}"] = t
    tensors["adam.m"] = adam_m.detach().to("cpu", torch.float32).contiguous()
    tensors["adam.v"] = adam_v.detach().to("cpu", torch.float32).contiguous()
    tensors["embedding.freqs"] = net.freqs.detach().to("cpu", torch.float32).contiguous()
    text = json.dumps(meta, indent=2)
    write_atomic(weights_path, st_save(tensors, metadata={META_KEY: text}))
    write_atomic(sidecar_path, text.encode())
    return weights_path


def load(spec):
    """(meta, tensors) of the checkpoint `spec`: the sidecar dict (from the weights file's
    header, as scoresde reads it) and every tensor by name, on the CPU."""
    weights_path, _ = paths(spec)
    if not os.path.isfile(weights_path):
        raise CheckpointError(f"{weights_path}: no such checkpoint file")
    try:
        with safe_open(weights_path, framework="pt") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except CheckpointError:
        raise
    except Exception as e:  # safetensors raises its own error types for truncated files
        raise CheckpointError(f"{weights_path}: not a readable safetensors file ({e}); truncated or corrupt") from e
    if META_KEY not in header:
        raise CheckpointError(f"{weights_path}: no scoresde metadata: not a checkpoint written by scoresde")
    try:
        meta = json.loads(header[META_KEY])
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{weights_path}: unreadable metadata: {e}") from e
    if meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{weights_path}: format version {meta.get('format')} (this code reads {FORMAT_VERSION})")
    return meta, tensors


def load_into(net, tensors, prefix):
    """The named tensors `prefix.<name>` for every parameter of `net`, checked against its shapes."""
    out = {}
    shapes = dict(net.named_parameters())
    for name in net.flat_names():
        key = f"{prefix}.{name}"
        if key not in tensors:
            raise CheckpointError(f"checkpoint tensor {key} missing (another network version?)")
        if tuple(tensors[key].shape) != tuple(shapes[name].shape):
            raise CheckpointError(f"checkpoint tensor {key} has shape {tuple(tensors[key].shape)}, "
                                  f"the architecture needs {tuple(shapes[name].shape)}")
        out[name] = tensors[key]
    return out


def load_net(spec, which="ema"):
    """The network of checkpoint `spec` with its `which` ('ema' or 'model') weights, in eval mode; and the meta."""
    from . import nets
    meta, tensors = load(spec)
    net = nets.build(meta["net"])
    set_weights(net, load_into(net, tensors, which), tensors)
    return net.eval(), meta


def set_weights(net, named, tensors):
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.copy_(named[name])
        if "embedding.freqs" not in tensors or tensors["embedding.freqs"].shape != net.freqs.shape:
            raise CheckpointError("checkpoint tensor embedding.freqs missing or of the wrong shape")
        net.freqs.copy_(tensors["embedding.freqs"])
