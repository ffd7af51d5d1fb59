"""What the web page shows, as plain data: verdict words, chart rows, table rows, annotated frames.

Pure functions of a Report (or of a models description); no Streamlit here, so each is unit-tested.
Probabilities are P(fake) throughout, so "higher = more suspicious" holds for every bar, line and box.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ..analysis.report import FAKE, NOT_APPLICABLE, REAL, UNCERTAIN, Report, unofficial_models, unofficial_sentence
from ..models.registry import pinned_entry

VERDICT_LABELS = {REAL: "REAL", FAKE: "FAKE", UNCERTAIN: "UNCERTAIN", NOT_APPLICABLE: "NOT APPLICABLE"}
VERDICT_COLOURS = {REAL: "green", FAKE: "red", UNCERTAIN: "orange", NOT_APPLICABLE: "gray"}  # Streamlit colour names
VERDICT_ICONS = {REAL: ":material/verified:", FAKE: ":material/report:", UNCERTAIN: ":material/help:",
                 NOT_APPLICABLE: ":material/block:"}

# What a user can do about a video that could not be judged.
REMEDIES = {
    "no_face": "Faces must be at least 80 px tall and seen from the front. Try a smaller frame skip, "
               "more samples, or a higher-resolution copy of the video.",
    "no_video_stream": "Upload the video itself, not its sound track.",
    "no_speech": "Upload a recording in which someone speaks; silence, steady tones and noise are not judged.",
    "still_image": "Upload a video clip; single pictures are not judged.",
    "too_short": "The file holds no decodable frames: it may be damaged. Try re-exporting it as MP4.",
    "abstained": "Lower the abstention threshold to force a REAL/FAKE call, or check the timeline and "
                 "frames below yourself.",
}

MODALITY_TITLES = {"video": "Face (video model)", "audio": "Voice (audio model)", "fused": "Combined (fused)"}
SERIES_COLOURS = {"face": "#1f77b4", "voice": "#9467bd", "combined": "#d62728"}  # timeline series

BOX_FAKE = (220, 38, 38)  # RGB of a face box counting toward FAKE
BOX_REAL = (22, 163, 74)


def pct(x: float | None) -> str:
    """A percentage to whole points; never "100 %" (nor "0 %") for a value short of certainty."""
    if x is None:
        return "–"
    if 0.995 <= x < 1.0:
        return "> 99 %"
    if 0.0 < x < 0.005:
        return "< 1 %"
    return f"{100 * x:.0f} %"


def provenance_warning(report: Report) -> str | None:
    """A sentence for the verdict card when the verdict comes from unofficial model files, else None."""
    unofficial = unofficial_models(report.models)
    if not unofficial:
        return None
    sentence = unofficial_sentence(unofficial)
    return sentence[0].upper() + sentence[1:] + "."


def training_caption(report: Report) -> str:
    """Where the judging models come from, in one caption under the verdict: the published checkpoints
    (FakeAVCeleb), the package's built-in model, or files the user supplied."""
    models = [m for m in (report.models.get("video"), report.models.get("audio")) if isinstance(m, dict)]
    sources = []
    if any(m.get("shipped") for m in models):
        sources.append("the built-in experimental model, trained by this project on generated talking-head videos "
                       "of 10 generator families (it does not catch face swaps; docs/MODEL_CARD.md)")
    if any(m.get("published") for m in models):
        sources.append("the original project's models, trained on one public dataset (FakeAVCeleb)")
    if any(not m.get("shipped") and not m.get("published") for m in models):
        sources.append("model files this installation supplied (see Model status)")
    origin = " and ".join(sources) if sources else "no model"
    return f"A score from {origin}: not proof. Look at when and where the evidence is, below."


def short_sha(sha256: str | None, n: int = 12) -> str:
    return (sha256 or "")[:n] or "–"


def fake_line(report: Report) -> float:
    """The P(fake) above which a face counts toward FAKE: REAL needs P(real) > threshold."""
    return round(1.0 - report.threshold, 6)


# -- verdict ---------------------------------------------------------------------------------------------
def verdict_label(report: Report) -> str:
    return VERDICT_LABELS.get(report.verdict, report.verdict)


def verdict_sentence(report: Report) -> str:
    """One or two sentences a non-specialist can read."""
    if report.verdict in (REAL, FAKE):
        audio = report.modalities.get("audio")
        video = report.modalities.get("video")
        judged = ("the face and the voice" if audio is not None and audio.available
                  else "the face (the voice was not judged)")
        if video is not None and not video.available:
            judged = "the voice alone"
        word = "real" if report.verdict == REAL else "manipulated (fake)"
        return (f"Judging {judged}, the detector finds this video {word}, with {pct(report.confidence)} "
                f"confidence. The mean combined probability of REAL is {report.fused_real_prob:.2f}; "
                f"the decision threshold is {report.threshold:.2f}.")
    if report.verdict == UNCERTAIN:
        lean = "REAL" if (report.fused_real_prob or 0.0) > report.threshold else "FAKE"
        return (f"{report.explanation} It leans {lean} with only {pct(report.confidence)} confidence, "
                f"below the abstention threshold of {pct(report.settings.get('abstain_below'))}.")
    return report.explanation or "The video could not be judged."


def verdict_remedy(report: Report) -> str | None:
    return REMEDIES.get(report.reason) if report.verdict in (UNCERTAIN, NOT_APPLICABLE) else None


def ground_truth_outcome(report: Report, truth: str | None) -> tuple[bool | None, str] | None:
    """(correct?, sentence) when the user gave a ground-truth label; correct is None when not judged."""
    if truth not in (REAL, FAKE):
        return None
    if report.verdict not in (REAL, FAKE):
        return None, (f"You said this video is {truth}; the detector gave no REAL/FAKE call, "
                      "so it is neither correct nor incorrect.")
    if report.verdict == truth:
        return True, f"Correct: you said this video is {truth}, and the detector says {report.verdict}."
    return False, f"Incorrect: you said this video is {truth}, but the detector says {report.verdict}."


# -- evidence --------------------------------------------------------------------------------------------
def modality_rows(report: Report) -> list[dict]:
    """One row per modality and one for the combination: P(fake), its own call, fusion weight, count."""
    rows = []
    for name in ("video", "audio"):
        m = report.modalities.get(name)
        if m is None:
            continue
        unit = "faces" if name == "video" else "voice windows of 2 s"
        rows.append({
            "name": name, "title": MODALITY_TITLES[name], "available": m.available,
            "p_fake": m.fake_prob, "prediction": m.prediction, "weight": m.weight,
            "detail": (f"{m.count} {unit} scored"
                       + (f" · fusion weight {m.weight:.2f}" if m.weight is not None else ""))
            if m.available else f"not judged: {m.note or 'not available'}",
        })
    if report.fused_real_prob is not None:
        rows.append({
            "name": "fused", "title": MODALITY_TITLES["fused"], "available": True,
            "p_fake": 1.0 - report.fused_real_prob, "prediction": report.verdict if report.verdict in (REAL, FAKE)
            else (REAL if report.fused_real_prob > report.threshold else FAKE),
            "weight": None,
            "detail": f"{combined_words(report)} · counts toward FAKE above {fake_line(report):.2f}",
        })
    return rows


AGGREGATION_WORDS = {"mean_prob": "mean probability", "mean_logit": "mean logit", "median": "median",
                     "top3_mean": "mean of the 3 highest", "trimmed_mean": "trimmed mean"}


def combined_words(report: Report) -> str:
    """How the combined score was made, and why it differs from the face score when it does."""
    video = report.models.get("video") if isinstance(report.models, dict) else None
    how = AGGREGATION_WORDS.get((video or {}).get("aggregation", ""), "")
    over = f" ({how} over the faces)" if how else ""
    audio, face = report.modalities.get("audio"), report.modalities.get("video")
    if face is None or not face.available:
        return "the voice's windows alone"
    if audio is None or not audio.available:
        return f"the face score itself: only the faces were judged{over}"
    return (f"each face fused with the voice of its moment (fusion: {report.settings.get('fusion')}), "
            f"then one score{over}: it differs from the face score by the voice's share")


def timeline_records(report: Report) -> list[dict]:
    """Long-form rows for a line chart of P(fake) over time: one series each for face, voice, combined.
    Face and combined rows carry the person (track) so each person gets their own line."""
    rows = []
    for r in report.timeline:
        person = f"person {r.track}"
        rows.append({"time_s": r.time_s, "p_fake": r.video_p_fake, "series": "face", "person": person,
                     "frame": r.frame_index})
        rows.append({"time_s": r.time_s, "p_fake": r.fused_p_fake, "series": "combined", "person": person,
                     "frame": r.frame_index})
    for w in report.audio_windows:
        rows.append({"time_s": round((w.start_s + w.end_s) / 2, 4), "p_fake": w.p_fake, "series": "voice",
                     "person": "voice", "frame": None})
    return rows


def track_records(report: Report) -> list[dict]:
    """The per-person table (one row per face track)."""
    line = fake_line(report)
    return [{
        "person": f"#{t.id}", "judged": FAKE if t.fused_p_fake >= line else REAL,
        "P(fake)": round(t.fused_p_fake, 3), "face only": round(t.video_p_fake, 3), "faces": t.faces,
        "seen (s)": f"{t.first_s:.1f}–{t.last_s:.1f}",
    } for t in report.tracks]


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow built without FreeType
        return ImageFont.load_default()


def frame_strip(report: Report) -> list[tuple[Image.Image, str]]:
    """The kept thumbnails with each analysed face boxed (red: counts toward FAKE, green: toward REAL)
    and labelled with its person number and combined P(fake); captions give the time."""
    line = fake_line(report)
    out = []
    for thumb in report.thumbnails:
        image = Image.fromarray(thumb.image).convert("RGB")
        draw = ImageDraw.Draw(image)
        rows = [r for r in report.timeline if r.frame_index == thumb.frame_index]
        width = max(2, round(min(image.size) / 60))
        font = _font(max(12, round(min(image.size) / 8)))
        for i, box in enumerate(thumb.boxes):
            row = rows[i] if i < len(rows) else None
            colour = (200, 200, 200) if row is None else BOX_FAKE if row.fused_p_fake >= line else BOX_REAL
            x1, y1, x2, y2 = box
            draw.rectangle([x1, y1, x2, y2], outline=colour, width=width)
            if row is not None:
                label = f"#{row.track} {row.fused_p_fake:.2f}"
                left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
                ty = y1 - (bottom - top) - 2 * width if y1 - (bottom - top) - 2 * width >= 0 else y1
                draw.rectangle([x1, ty, x1 + (right - left) + 2 * width, ty + (bottom - top) + 2 * width], fill=colour)
                draw.text((x1 + width - left, ty + width - top), label, fill=(255, 255, 255), font=font)
        faces = len(thumb.boxes)
        caption = f"{thumb.time_s:.1f} s · " + (f"{faces} face{'s' if faces != 1 else ''}" if faces else "no face")
        out.append((image, caption))
    return out


def explanation_strip(report: Report) -> list[tuple[Image.Image, str]]:
    """The Grad-CAM overlays of the most suspicious faces (report.explanations, when asked), captioned with
    their rank, time and the face model's P(fake)."""
    return [(Image.fromarray(e.overlay).convert("RGB"), f"#{e.rank} · {e.time_s:.1f} s · face P(fake) "
             f"{e.video_p_fake:.2f}") for e in report.explanations]


def count_line(report: Report) -> str:
    c = report.counts
    duration = report.media.get("duration_s")
    parts = [
        f"{c.get('frames_sampled', 0)} frames sampled" + (f" from {duration:.1f} s of video" if duration else ""),
        f"{c.get('faces', 0)} faces in {c.get('tracks', 0)} track{'s' if c.get('tracks', 0) != 1 else ''}",
        f"{c.get('audio_windows', 0)} audio windows",
        f"{report.timings.get('total', 0.0):.1f} s processing",
    ]
    return " · ".join(parts)


def timing_records(report: Report) -> list[dict]:
    return [{"stage": k.replace("_", " "), "seconds": v} for k, v in report.timings.items() if k != "total"]


BROWSER_VIDEO_CODECS = {"h264", "vp8", "vp9", "av1"}  # what common browsers play in <video>


def playback_hint(report: Report) -> str | None:
    """A word for users whose player shows no picture because the browser cannot decode the codec."""
    codec = report.media.get("video_codec")
    if codec and codec not in BROWSER_VIDEO_CODECS:
        return (f"No picture in the player? This video is {codec}, which most browsers cannot play. "
                f"The analysis decodes it anyway.")
    return None


def download_names(report: Report) -> tuple[str, str]:
    stem = Path(report.file).stem or "video"
    return f"{stem}.deepfake-report.json", f"{stem}.timeline.csv"


# -- models ----------------------------------------------------------------------------------------------
def model_records(models: dict) -> list[dict]:
    """The model status: one row per model, with a short sha256 and whether the file is the published
    one (its sha256 pinned in the weights registry), so a server running other weights shows it."""
    rows = []
    for key, title in (("video", "video model"), ("audio", "audio model")):
        m = models.get(key)
        if m:
            published = m.get("published") or pinned_entry(m.get("sha256") or "") is not None
            rows.append({"model": title, "file": m.get("file"), "sha256": short_sha(m.get("sha256")),
                         "published": bool(published), "shipped": bool(m.get("shipped"))})
        else:
            rows.append({"model": title, "file": None, "sha256": None, "published": None, "shipped": None})
    faces = models.get("face_detector") or {}
    files = [f.get("file") for f in faces.get("files", [])]
    methods = " + ".join({"dnn": "res10 SSD", "haar": "Haar cascade"}.get(m, m) for m in faces.get("methods", []))
    rows.append({"model": "face detector", "file": ", ".join(files) or None, "sha256": None, "published": None,
                 "shipped": None, "methods": methods, "source": faces.get("source")})
    return rows


def model_lines(models: dict) -> list[str]:
    """The model status as short Markdown lines for a narrow sidebar."""
    lines = []
    for row in model_records(models):
        if row["model"] == "face detector":
            if "res10" in row["methods"]:
                lines.append(f"**face detector**: {row['methods']}"
                             + (f"  \nfiles from the {row['source']}" if row["source"] else ""))
            else:
                lines.append(f"**face detector**: {row['methods']}  \n:orange[Haar cascade only: no res10 files]")
        elif row["file"] is None:
            lines.append(f"**{row['model']}**: :orange[not loaded]")
        elif row["shipped"]:  # what it is, in neutral words: the model card says what it catches and misses
            lines.append(f"**{row['model']}**: built-in model, shipped with the package (sha256 `{row['sha256']}`)"
                         f"  \n`{row['file']}`")
        else:
            origin = "the published file" if row["published"] else ":orange[not the published file]"
            lines.append(f"**{row['model']}**: `{row['file']}`  \nsha256 `{row['sha256']}` · {origin}")
    lines.append(f"**device** {models.get('device')} · **precision** {models.get('precision')}"
                 + (f" · **runtime** {models['runtime']}" if models.get("runtime") else ""))
    return lines
