"""Converting an original checkpoint (`.pt` / `.pth`) into the `.safetensors` file the loader prefers
(`deepfake-detect weights convert`), checked by scoring both networks on the same inputs."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .checkpoints import load_model, read_safetensors_metadata, save_safetensors
from ..errors import CheckpointError, SettingsError
from .model_files import files_missing
from .registry import AUDIO_FILES, VIDEO_FILES, pinned_entry, registry_entry, resolve_models_dir, sha256_file
from ..version import __version__

CONVERT_CHECK_BATCH = 2  # random inputs both networks score to show the conversion is faithful...
CONVERT_CHECK_SIZE = 128  # ...at this many pixels square: every weight takes part, at a fifth of the cost of 299
FP16_TOLERANCE = 1e-2  # largest allowed difference in probability for an fp16 conversion


def convert(source: str | os.PathLike, output: str | os.PathLike | None = None, modality: str | None = None,
            fp16: bool = False, models_dir: str | os.PathLike | None = None) -> Path:
    """Convert an original checkpoint (`.pt` / `.pth`) into a `.safetensors` file the loader prefers.

    `source` is a path, or "video" / "audio" for that file in the models directory. The output (default:
    the source with the suffix `.safetensors`, e.g. `epoch_007.safetensors`) holds the tensors in fp32
    (fp16 with `fp16=True`) and metadata: architecture, modality, head, class order, input size, mean/std,
    the source's file name and sha256, dtype. Before the file is moved into place it is loaded strictly
    through `checkpoints.load_model` and both networks score the same random inputs: fp32 must give
    identical probabilities, fp16 within 1e-2; otherwise nothing is written and CheckpointError is raised.
    """
    src = _convert_source(source, models_dir)
    digest = sha256_file(src)
    if modality is None:
        modality = _guess_modality(src, digest)
    if modality not in ("video", "audio"):
        raise SettingsError(f"say which model {src.name} is: modality 'video' or 'audio'")
    out = Path(output) if output else src.with_suffix(".safetensors")
    if out.suffix != ".safetensors":
        raise SettingsError(f"the output must end in .safetensors; got {out.name}")
    if out.resolve() == src.resolve():
        raise SettingsError(f"the output {out} would overwrite its source; choose another with --out")
    original = load_model(src, modality, sha256=digest)
    dtype = torch.float16 if fp16 else torch.float32
    pinned = pinned_entry(digest)
    extra = {"source_file": src.name, "source_sha256": digest, "dtype": str(dtype).replace("torch.", ""),
             "converted_by": f"deepfake_core {__version__}"}
    if pinned is not None:
        extra["source_name"] = pinned.name
    tmp = out.with_name(out.stem + ".tmp.safetensors")
    try:
        save_safetensors(original.module, original.spec, tmp, extra=extra, dtype=dtype)
        converted = load_model(tmp, modality)
        diff = _probability_difference(original.module, converted.module)
        if (diff != 0.0) if not fp16 else (diff > FP16_TOLERANCE):
            raise CheckpointError(
                f"the conversion of {src.name} changed its probabilities by up to {diff:.3g} "
                f"(allowed: {0 if not fp16 else FP16_TOLERANCE}); nothing was written"
            )
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _convert_source(source: str | os.PathLike, models_dir) -> Path:
    if str(source) in ("video", "audio"):
        directory = resolve_models_dir(models_dir)
        entry = registry_entry(str(source))
        path = directory / entry.filename
        if not path.is_file():
            raise files_missing([entry.filename], directory)
        return path
    path = Path(source).expanduser()
    if not path.is_file():
        raise SettingsError(f"no such checkpoint: {path} (give a file, or 'video' / 'audio' for the models folder)")
    return path


def _guess_modality(path: Path, digest: str) -> str | None:
    if path.suffix == ".safetensors":  # ours name their model (e.g. an fp32 file converted again to fp16)
        return read_safetensors_metadata(path).get("modality")
    pinned = pinned_entry(digest)
    if pinned is not None and pinned.name in ("video", "audio"):
        return pinned.name
    if path.name in VIDEO_FILES:
        return "video"
    if path.name in AUDIO_FILES:
        return "audio"
    return None


def _probability_difference(a, b) -> float:
    """Largest absolute difference between the two networks' softmax outputs on fixed random inputs."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn((CONVERT_CHECK_BATCH, 3, CONVERT_CHECK_SIZE, CONVERT_CHECK_SIZE), generator=g)
    with torch.inference_mode():
        pa = torch.softmax(a.eval()(x).float(), dim=1)
        pb = torch.softmax(b.eval()(x).float(), dim=1)
    return float((pa - pb).abs().max())
