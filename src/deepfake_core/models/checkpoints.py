"""Loading and saving model weights: safe (weights_only / safetensors) and strict.

Accepted forms:
- `.safetensors` written by `save_safetensors` (its metadata names the architecture), or a bare one;
- `.pt` / `.pth` loaded with `torch.load(weights_only=True)`: a dict holding `model_state_dict` or
  `state_dict`, or a bare state dict. Video keys as timm names them, with or without a `model.` prefix;
  audio keys `backbone.*` + `classifier.*` (or the older `base.*`). `module.` and `_orig_mod.` prefixes
  (DataParallel, torch.compile) are stripped.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import CheckpointError
from .networks import ORIGINAL_AUDIO, ORIGINAL_VIDEO, ModelSpec, build_model, check_architecture
from .registry import is_shipped_builtin, pinned_entry, sha256_file

METADATA_FORMAT = "deepfake_core/1"
MIN_INPUT_SIZE, MAX_INPUT_SIZE = 16, 1024  # pixels: the input sides a model file may declare
_SHOW_KEYS = 5  # keys named in a mismatch error


@dataclass
class LoadedModel:
    module: nn.Module  # in eval mode, on the CPU in fp32
    spec: ModelSpec
    path: Path
    sha256: str
    metadata: dict  # the file's metadata (safetensors) or {}

    def describe(self) -> dict:
        return {
            "file": self.path.name,
            "path": str(self.path),
            "sha256": self.sha256,
            **{k: v for k, v in self.spec.to_dict().items() if k in ("architecture", "modality", "input_size")},
            "name": self.metadata.get("name", "original"),
            # the file is one the weights registry pins, or was converted from one
            "published": pinned_entry(self.sha256) is not None
            or pinned_entry(self.metadata.get("source_sha256", "")) is not None,
            "shipped": is_shipped_builtin(self.path, self.sha256),  # the package's own built-in model
        }


def spec_from_metadata(meta: dict, source: str = "the model file") -> ModelSpec | None:
    """The ModelSpec a safetensors file's metadata describes, or None if it names none. An architecture or
    head outside networks.KNOWN_ARCHITECTURES / HEADS raises CheckpointError (nothing is ever fetched)."""
    if "architecture" not in meta or "modality" not in meta:
        return None
    check_architecture(meta["architecture"], meta.get("head", "linear"), source)
    if meta["modality"] not in ("video", "audio"):
        raise CheckpointError(f"{source}: modality must be video or audio; got {meta['modality']!r}")
    try:
        spec = ModelSpec(
            architecture=meta["architecture"],
            modality=meta["modality"],
            head=meta.get("head", "linear"),
            input_size=int(meta["input_size"]),
            mean=tuple(float(v) for v in json.loads(meta["mean"])),
            std=tuple(float(v) for v in json.loads(meta["std"])),
            class_names=tuple(json.loads(meta.get("class_names", '["fake", "real"]'))),
        )
    except (KeyError, ValueError, TypeError, RecursionError) as e:
        raise CheckpointError(f"{source}: malformed model metadata ({type(e).__name__}: {e})") from e
    problem = None
    if not MIN_INPUT_SIZE <= spec.input_size <= MAX_INPUT_SIZE:
        problem = f"input_size {spec.input_size} is outside {MIN_INPUT_SIZE}-{MAX_INPUT_SIZE}"
    elif len(spec.mean) != 3 or len(spec.std) != 3 or not all(math.isfinite(v) for v in spec.mean + spec.std):
        problem = "mean and std must be three finite numbers each"
    elif not all(v > 0 for v in spec.std):
        problem = "std must be > 0"
    elif len(spec.class_names) != 2 or not all(isinstance(c, str) for c in spec.class_names):
        problem = "class_names must be two names (fake, real)"
    if problem:
        raise CheckpointError(f"{source}: malformed model metadata: {problem}")
    return spec


def spec_metadata(spec: ModelSpec) -> dict[str, str]:
    return {
        "format": METADATA_FORMAT,
        "architecture": spec.architecture,
        "modality": spec.modality,
        "head": spec.head,
        "input_size": str(spec.input_size),
        "mean": json.dumps(list(spec.mean)),
        "std": json.dumps(list(spec.std)),
        "class_names": json.dumps(list(spec.class_names)),
    }


def read_safetensors_metadata(path: str | os.PathLike) -> dict:
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{Path(path).name}: not a readable safetensors file: {e}") from e


def read_state_dict(path: str | os.PathLike, sha256: str | None = None) -> dict[str, torch.Tensor]:
    """The raw tensors of a checkpoint file (no key renaming), loaded without running any code from it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no such checkpoint: {path}")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path), device="cpu")
        except Exception as e:
            raise CheckpointError(f"{path.name}: not a readable safetensors file: {e}") from e
    try:
        with quiet_unpickler():
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        obj = _load_pinned_with_inert_globals(path, e, sha256)
    except Exception as e:  # torch.load raises many types on a damaged or foreign file
        raise CheckpointError(f"{path.name}: not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from e
    return _extract_state_dict(obj, path)


@contextlib.contextmanager
def quiet_unpickler() -> Iterator[None]:
    """torch.load without its warning about a pickle protocol other than its own: a foreign or damaged file
    prints it before our error says what is wrong, and a good file loads the same without it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
        yield


def _load_pinned_with_inert_globals(path: Path, error: Exception, sha256: str | None):
    """A file that `weights_only=True` refuses. Only a file pinned in the registry (the published
    checkpoints) is retried, with each offending global replaced by an inert placeholder class:
    nothing named in the file is ever imported or called."""
    try:
        with quiet_unpickler():
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:
        unsafe = []
    if not unsafe:
        raise CheckpointError(f"{path.name}: not a readable PyTorch checkpoint ({error})") from error
    digest = sha256 or sha256_file(path)
    entry = pinned_entry(digest)
    names = ", ".join(unsafe)
    if entry is None:
        raise CheckpointError(
            f"{path.name} refused: loading it needs arbitrary Python objects ({names}), and unpickling them "
            f"could run code from the file. Only tensors are loaded (torch.load weights_only=True). Re-save "
            f"the state dict alone (torch.save(model.state_dict(), ...)) or as .safetensors."
        ) from error
    placeholders = [(_inert_class(name), name) for name in unsafe]
    try:
        with torch.serialization.safe_globals(placeholders), quiet_unpickler():
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path.name} (pinned as {entry.name!r}) could not be read safely: {e}") from e


def _inert_class(qualified_name: str) -> type:
    """A class that accepts any constructor arguments and state and does nothing with them."""

    class Inert:
        def __init__(self, *args, **kwargs):
            pass

        def __setstate__(self, state):
            pass

        def __repr__(self):
            return f"<inert {qualified_name}>"

    Inert.__qualname__ = Inert.__name__ = qualified_name.rsplit(".", 1)[-1]
    return Inert


def _extract_state_dict(obj, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("model_state_dict", "state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path.name}: no state dict found (expected a dict of tensors)")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if len(tensors) != len(obj):
        bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)][:_SHOW_KEYS]
        raise CheckpointError(f"{path.name}: the state dict holds non-tensor entries: {bad}")
    return tensors


def normalise_keys(state: dict[str, torch.Tensor], spec: ModelSpec) -> dict[str, torch.Tensor]:
    """Map the known key layouts onto the layout `build_model(spec)` creates."""
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "_orig_mod."):
            while key.startswith(prefix):
                key = key[len(prefix):]
        if spec.head == "mlp-512-256":
            if key.startswith("base."):
                key = "backbone." + key[len("base."):]
        elif key.startswith("model."):
            key = key[len("model."):]
        out[key] = value
    return out


def load_into(module: nn.Module, state: dict[str, torch.Tensor], path: Path, spec: ModelSpec) -> None:
    """`module.load_state_dict(state, strict=True)`, with an error that names what does not fit."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (first: {missing[:_SHOW_KEYS]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (first: {unexpected[:_SHOW_KEYS]})")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches (first: {mismatched[:_SHOW_KEYS]})")
        raise CheckpointError(
            f"{path.name} does not fit the {spec.modality} model ({spec.architecture}, head {spec.head}): "
            + "; ".join(parts)
        )
    module.load_state_dict(state, strict=True)


def load_model(path: str | os.PathLike, modality: str | None = None, sha256: str | None = None) -> LoadedModel:
    """Build the network a checkpoint needs and load it strictly.

    The architecture comes from the file's metadata when it has some (our safetensors files); otherwise
    the file is taken to be one of the original project's, for `modality` ("video" or "audio").
    """
    path = Path(path)
    digest = sha256 or (sha256_file(path) if path.is_file() else "")
    meta = read_safetensors_metadata(path) if path.suffix == ".safetensors" else {}
    spec = spec_from_metadata(meta, path.name)
    if spec is None:
        if modality not in ("video", "audio"):
            raise CheckpointError(f"{path.name}: no metadata names its model; say whether it is video or audio")
        spec = ORIGINAL_VIDEO if modality == "video" else ORIGINAL_AUDIO
    elif modality is not None and spec.modality != modality:
        raise CheckpointError(f"{path.name} is a {spec.modality} model, not a {modality} model")
    state = normalise_keys(read_state_dict(path, digest), spec)
    module = build_model(spec)
    load_into(module, state, path, spec)
    module.eval()
    return LoadedModel(module, spec, path, digest, meta)


def save_safetensors(
    module: nn.Module, spec: ModelSpec, path: str | os.PathLike, extra: dict | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write `module`'s weights and `spec` (plus string metadata `extra`) as a safetensors file."""
    path = Path(path)
    state = {
        k: (v.detach().to(dtype) if v.is_floating_point() else v.detach()).contiguous().cpu()
        for k, v in module.state_dict().items()
    }
    meta = spec_metadata(spec)
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in (extra or {}).items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=meta)
    return path
