"""The Deepfake Detector web page (Streamlit): upload a video, read the verdict and its evidence.

Start it with `deepfake-detect serve [--port N] [--host H]` or `streamlit run app/streamlit_app.py`.
The page reads: DEEPFAKE_MODELS_DIR (the models folder; else ./models, then the per-user cache),
DEEPFAKE_DEVICE (auto|cpu|cuda|mps), DEEPFAKE_PRECISION (auto|fp32|bf16), DEEPFAKE_RUNTIME (auto|torch|openvino)
and DEEPFAKE_DEBUG=1 (tracebacks on the page). The upload cap is the server's `server.maxUploadSize` (500 MB by
default), checked again here.

It only calls deepfake_core (no torch, cv2 or timm here). The Detector is loaded once per server and shared
between sessions (it is thread-safe); each upload goes to its own temporary file, removed on every path, and
results live in st.session_state, so two browser sessions never see each other's files or results.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

import altair as alt
import streamlit as st

from deepfake_core.process import configure_process

configure_process()  # this page is an entry point: the OpenMP policy before torch loads (process.py)

from deepfake_core import (  # noqa: E402
    AnalysisSettings,
    CheckpointError,
    DeepfakeError,
    Detector,
    InputError,
    MediaTooLarge,
    ModelFilesMissing,
    SettingsError,
    UnreadableMedia,
)
from deepfake_core.analysis.load import DetectorOptions  # noqa: E402
from deepfake_core.analysis.load import load_detector as load_library_detector  # noqa: E402
from deepfake_core.errors import ModelsDirMissing  # noqa: E402
from deepfake_core.media.files import is_audio_file, upload_types  # noqa: E402
from deepfake_core.models import registry, weights  # noqa: E402
from deepfake_core.models.model_files import named_models_dir  # noqa: E402
from deepfake_core.settings import widget_fields  # noqa: E402
from deepfake_core.webapp import present  # noqa: E402

UPLOAD_TYPES = upload_types()  # the extensions the commands take (media/files.py); audio files: the voice alone
MB = 1024 * 1024  # bytes
COPY_CHUNK = 8 * MB  # bytes copied per write when saving an upload
log = logging.getLogger("deepfake_core.webapp")

NO_TRUTH = "not given"
HELP = {  # the settings widgets take theirs from the AnalysisSettings fields (settings.py)
    "truth": "If you already know whether this video is real or fake, the result says whether the detector "
             "got it right.",
    "explain": "After the analysis, show where the face model saw FAKE in the most suspicious faces (Grad-CAM "
               "heatmaps: red = strongest evidence). Takes a few extra seconds.",
    "video_model": "Which face model judges the video. **original**: the published FakeAVCeleb-trained Xception "
                   "(downloaded with `deepfake-detect weights pull`). **built-in**: the small model shipped with "
                   "this package, trained by the project on real faces only (see its model card). **automatic**: "
                   "the original when it is installed, else the built-in one.",
}
AUTO_MODEL = "automatic"
VIDEO_MODEL_LABELS = {AUTO_MODEL: "automatic", "original": "original (FakeAVCeleb Xception)",
                      "builtin": "built-in (real-only EfficientNet-Lite0)"}


# -- models ----------------------------------------------------------------------------------------------
@st.cache_resource(show_spinner="Loading the models (once per server)…", max_entries=4)
def load_detector(options: DetectorOptions, models_dir: str) -> Detector:
    """One Detector per (options, the models folder they resolve to now), shared by every session. A failed load
    is not cached, so fixing the files and reloading the page retries."""
    return load_library_detector(options, voice_only=True)  # audio uploads need no face model


def video_model_choices(models_dir: str) -> list[str]:
    """The video models this server can load: automatic, plus original and built-in where present."""
    choices = [AUTO_MODEL]
    if registry.first_existing(Path(models_dir), registry.VIDEO_FILES) is not None:
        choices.append("original")
    if registry.builtin_video_file() is not None:
        choices.append("builtin")
    return choices


def video_model_picker(models_dir: str) -> str | None:
    """The sidebar's video-model select box; None means automatic."""
    choices = video_model_choices(models_dir)
    if len(choices) <= 2:  # only one model available: nothing to choose
        return None
    choice = st.sidebar.selectbox("Video model", choices, format_func=VIDEO_MODEL_LABELS.get,
                                  help=HELP["video_model"], key="video_model")
    return None if choice == AUTO_MODEL else choice


def model_config() -> tuple[str, str, str]:
    models_dir = registry.resolve_models_dir(None).expanduser().resolve()
    return str(models_dir), os.environ.get("DEEPFAKE_DEVICE", "auto"), os.environ.get("DEEPFAKE_PRECISION", "auto")


def get_detector(video_model: str | None = None) -> Detector | None:
    """The shared Detector, or None after showing why it cannot be loaded and what to do."""
    models_dir, device, precision = model_config()
    try:
        named = named_models_dir(None)  # DEEPFAKE_MODELS_DIR naming a folder that does not exist: ModelsDirMissing
        options = DetectorOptions(models_dir=str(named) if named else None, device=device, precision=precision,
                                  video_model=video_model, runtime=os.environ.get("DEEPFAKE_RUNTIME", "auto"))
        return load_detector(options, models_dir)
    except ModelsDirMissing as e:
        st.error(f"**The models folder does not exist.** {e}\n\nSet DEEPFAKE_MODELS_DIR to the folder holding the "
                 f"model files (or use `deepfake-detect serve --models-dir DIR`).", icon=":material/error:")
    except ModelFilesMissing as e:
        missing_models_panel(e)
    except CheckpointError as e:
        st.error(f"**A model file could not be loaded.** {e}\n\nReplace it with a good copy: "
                 f"`deepfake-detect weights pull --models-dir {models_dir}` re-downloads and checks each file's "
                 f"sha256.", icon=":material/error:")
    except SettingsError as e:
        st.error(f"**The server's model settings are invalid.** {e}\n\nSet DEEPFAKE_DEVICE to auto, cpu, cuda "
                 f"or mps, DEEPFAKE_PRECISION to auto, fp32 or bf16 and DEEPFAKE_RUNTIME to auto, torch or openvino "
                 f"(or use `deepfake-detect serve --device --precision --runtime`).",
                 icon=":material/error:")
    except DeepfakeError as e:
        st.error(f"**The models could not be loaded.** {e}", icon=":material/error:")
    except Exception as e:  # no traceback for users; the server log has it
        internal_error("loading the models", e)
    return None


def missing_models_panel(e: ModelFilesMissing) -> None:
    with st.container(border=True, key="models-missing"):
        st.error("**Model files missing.** The detector cannot analyse videos until they are in place.",
                 icon=":material/folder_off:")
        files = ", ".join(f"`{name}`" for name in e.missing)
        optional = [entry.filename for entry in missing_entries(e.models_dir)
                    if entry.filename not in e.missing and not any(name.startswith(Path(entry.filename).stem)
                                                                   for name in e.missing)]
        where = ", ".join(f"`{p}`" for p in e.searched)
        st.markdown(f"Missing: {files}" + (f"  \nAlso missing (optional): {', '.join(f'`{n}`' for n in optional)}"
                                           if optional else "") + f"  \nLooked in: {where}")
        st.markdown("Download them (each is checked against its published sha256) with:")
        st.code(f"deepfake-detect weights pull --models-dir {e.models_dir}", language="bash", wrap_lines=True)
        st.caption("Or copy the files into that folder, or start the server with DEEPFAKE_MODELS_DIR pointing at "
                   "the folder that has them. Then reload this page.")
        pull_button(e.models_dir, key="pull")


def missing_entries(models_dir: str) -> list:
    """The registry files not in the models folder."""
    return list(registry.missing_files(models_dir))


def pull_button(models_dir: str, key: str) -> None:
    """A button that downloads the missing registry files into `models_dir` with the library's pull,
    showing progress; on success the models are loaded afresh."""
    pull = getattr(weights, "pull", None)
    entries = missing_entries(models_dir)
    if not callable(pull) or not entries:
        return
    total = registry.download_bytes(entries)  # the registry's sizes, as `weights pull` and run.sh say them
    label = (f"Download {len(entries)} missing file{'s' if len(entries) > 1 else ''} ({registry.megabytes(total)})"
             if total else f"Install {len(entries)} missing file{'s' if len(entries) > 1 else ''} (no download)")
    if not st.button(label, key=key, icon=":material/download:"):
        return
    bar = st.progress(0.0, text="Starting the download…")

    def progress(name: str, done: int, size: int) -> None:
        bar.progress(min(done / size, 1.0) if size else 0.0,
                     text=f"{name}: {registry.megabytes(done)} of {registry.megabytes(size)}")

    try:
        pull(names=[entry.name for entry in entries], models_dir=models_dir, progress=progress)
    except (DeepfakeError, OSError) as err:
        st.error(f"**The download failed.** {err}\n\nRun `deepfake-detect weights pull --models-dir {models_dir}` "
                 f"in a terminal to see its progress, or copy the files in by hand.", icon=":material/error:")
        return
    except Exception as err:
        internal_error("downloading the model files", err)
        return
    finally:
        bar.empty()
    load_detector.clear()  # a detector loaded without the optional files is replaced
    st.rerun()


def model_status(detector: Detector) -> None:
    models = detector.describe_models()
    with st.sidebar.expander("Model status", icon=":material/memory:"):
        st.markdown("\n\n".join(present.model_lines(models)))
        st.caption(f"Models folder `{models['models_dir']}`")
        for note in detector.load_notes:
            st.caption(f":orange[{note}]")
        pull_button(models['models_dir'], key="pull_optional")


# -- settings --------------------------------------------------------------------------------------------
def settings_panel(defaults: AnalysisSettings, lines: list[str]) -> dict:
    """The sidebar settings, as AnalysisSettings values by field name, plus the ground-truth label. `defaults`
    (Detector.resolve_settings: the calibration and the model files' own values, as `analyze` uses them)
    sets the starting values; `lines` (its notes) are shown under them."""
    with st.sidebar:
        settings = {f.name: setting_widget(f, getattr(defaults, f.name)) for f in widget_fields(AnalysisSettings)}
        truth = st.selectbox("Ground truth (optional)", [NO_TRUTH, "REAL", "FAKE"], help=HELP["truth"],
                             key="truth")
        for line in lines:
            st.caption(line)
    return {"settings": settings, "truth": None if truth == NO_TRUTH else truth}


def page_settings(defaults: AnalysisSettings, notes: list[str], chosen: dict, cap_mb: int
                  ) -> tuple[AnalysisSettings, list[str]]:
    """(the settings an upload is analysed with, the notes its report carries): `defaults` with the values set on
    the page; a value changed from its default is named in a note."""
    changed = [f"{name} {value}" for name, value in chosen.items() if value != getattr(defaults, name)]
    notes = list(notes) + ([f"set on the page: {', '.join(changed)}"] if changed else [])
    return defaults.replace(**chosen, max_file_mb=float(cap_mb)), notes


def setting_widget(f, value):
    """The sidebar widget of an AnalysisSettings field, made from its metadata (settings.Widget), keyed by
    the field's name; returns the value set (None when its check box turned an optional field off)."""
    w = f.metadata["widget"]
    on = True
    if w.toggle:  # an optional field: a check box turns it on and off
        label, key, help_ = w.toggle
        on = st.checkbox(label, value=value is not None, help=help_, key=key)
        value = f.default if value is None else value
    if w.kind == "select":
        choices = f.metadata["choices"]
        value = st.selectbox(w.label, choices, index=choices.index(value), help=w.help, key=f.name,
                             format_func=(w.labels or {}).get)
    else:
        cast = type(f.default)  # int or float
        value = cast(value)
        low, high = min(cast(w.low), value), max(cast(w.high), value)  # a calibrated value outside stays as it is
        step = None if w.step is None else cast(w.step)
        if w.kind == "slider":
            value = st.slider(w.label, low, high, value, step, help=w.help, key=f.name, disabled=not on)
        else:
            value = st.number_input(w.label, low, high, value, step, help=w.help, key=f.name, disabled=not on)
        value = cast(value)
    return value if on else None


def upload_cap_mb() -> int:
    return int(st.get_option("server.maxUploadSize"))


# -- analysis --------------------------------------------------------------------------------------------
def analyse_upload(detector: Detector, uploaded, resolved: tuple[AnalysisSettings, list[str]], chosen: dict,
                   cap_mb: int, explain: bool = False) -> dict | None:
    """Save the upload to its own temporary file, analyse it (and with `explain`, Grad-CAM its most suspicious
    faces), remove the file (on every path). Returns the session's result, or None after showing an error with
    its remedy."""
    if uploaded.size > cap_mb * MB:
        st.error(f"**'{uploaded.name}' is {uploaded.size / MB:.0f} MB, over the {cap_mb} MB upload limit.** "
                 f"Trim it or re-encode it smaller (for example to 720p), or ask whoever runs this server to "
                 f"raise the limit (`deepfake-detect serve --max-upload-mb N`).", icon=":material/error:")
        return None
    try:
        settings, notes = page_settings(*resolved, chosen, cap_mb)
    except SettingsError as e:
        st.error(f"**Invalid setting.** {e}", icon=":material/error:")
        return None
    bar = st.progress(0.0, text="Saving the upload…")
    path = None
    try:
        suffix = Path(uploaded.name).suffix.lower()
        with tempfile.NamedTemporaryFile(prefix="deepfake-upload-", suffix=suffix if suffix[1:] in UPLOAD_TYPES
                                         else ".video", delete=False) as f:
            path = f.name
            uploaded.seek(0)
            while chunk := uploaded.read(COPY_CHUNK):
                f.write(chunk)

        def progress(fraction: float, message: str) -> None:
            bar.progress(min(max(float(fraction), 0.0), 1.0), text=message)

        # the report names the upload, not the temporary file
        report = detector.analyze(path, settings, progress=progress, display_name=uploaded.name, notes=notes)
        if explain and report.timeline:
            from deepfake_core.analysis.explain import explain_report

            bar.progress(1.0, text="Explaining the most suspicious faces…")
            explain_report(detector, path, report)
        return {"file_id": uploaded.file_id, "report": report, "settings": chosen,
                "json": report.to_json(), "csv": report.timeline_csv()}
    except ModelFilesMissing as e:
        missing_models_panel(e)
    except UnreadableMedia as e:
        st.error(f"**This file cannot be read as a video.** {_upload_words(e, path, uploaded.name)}\n\n"
                 f"It may not be a video, be empty, or have lost its index in an interrupted download or copy. "
                 f"Try the original file, or re-export it as MP4 (H.264 video, AAC audio).",
                 icon=":material/broken_image:")
    except MediaTooLarge as e:
        st.error(f"**This video is over a limit.** {_upload_words(e, path, uploaded.name)}\n\n"
                 f"Trim it to a shorter clip or re-encode it at a lower resolution.", icon=":material/error:")
    except (InputError, SettingsError) as e:
        st.error(f"**This video cannot be analysed.** {_upload_words(e, path, uploaded.name)}",
                 icon=":material/error:")
    except DeepfakeError as e:
        st.error(f"**The analysis failed.** {_upload_words(e, path, uploaded.name)}", icon=":material/error:")
    except Exception as e:  # no traceback for users; the server log has it
        internal_error("analysing the video", e)
    finally:
        bar.empty()
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    return None


def _upload_words(error: Exception, path: str | None, name: str) -> str:
    """The error message with the temporary file's path replaced by the uploaded file's name."""
    text = str(error)
    if path:
        text = text.replace(path, name).replace(Path(path).name, name)
    return text


def internal_error(doing: str, e: Exception) -> None:
    log.exception("internal error while %s", doing)
    st.error(f"**Something went wrong while {doing}** ({type(e).__name__}: {e}). This is a bug: please report "
             f"it; the server's log has the details.", icon=":material/bug_report:")
    if os.environ.get("DEEPFAKE_DEBUG"):
        st.exception(e)


# -- results ---------------------------------------------------------------------------------------------
def show_result(result: dict, truth: str | None, current_settings: dict) -> None:
    report = result["report"]
    verdict_card(report, truth)
    if result["settings"] != current_settings:
        st.info("The settings changed since this analysis. Press **Analyse** to apply them.",
                icon=":material/tune:")
    if report.verdict != "NOT_APPLICABLE" or report.fused_real_prob is not None:
        evidence(report)
        timeline_chart(report)
    frames(report)
    people(report)
    notes(report)
    st.caption(present.count_line(report))
    with st.expander("Processing time by stage"):
        st.dataframe(present.timing_records(report), hide_index=True)
    json_name, csv_name = present.download_names(report)
    left, right = st.columns(2)
    left.download_button("Report (JSON)", result["json"], file_name=json_name, mime="application/json",
                         icon=":material/download:", on_click="ignore", key="download_json", width="stretch")
    right.download_button("Timeline (CSV)", result["csv"], file_name=csv_name, mime="text/csv",
                          icon=":material/download:", on_click="ignore", key="download_csv", width="stretch",
                          disabled=not report.timeline)


def verdict_card(report, truth: str | None) -> None:
    colour = present.VERDICT_COLOURS.get(report.verdict, "gray")
    with st.container(border=True, key="verdict"):
        main, side = st.columns([3, 1], vertical_alignment="center")
        main.markdown(f"## :{colour}[{present.VERDICT_ICONS.get(report.verdict, '')} "
                      f"{present.verdict_label(report)}]")
        main.markdown(present.verdict_sentence(report))
        provenance = present.provenance_warning(report)
        if provenance:  # next to the verdict, not only in the models panel
            main.warning(provenance, icon=":material/warning:")
        if report.confidence is not None:
            side.metric("Confidence", present.pct(report.confidence))
        remedy = present.verdict_remedy(report)
        if remedy:
            st.caption(remedy)
        outcome = present.ground_truth_outcome(report, truth)
        if outcome is not None:
            correct, sentence = outcome
            if correct is None:
                st.info(sentence, icon=":material/help:")
            elif correct:
                st.success(sentence, icon=":material/check_circle:")
            else:
                st.warning(sentence, icon=":material/cancel:")
        st.caption(present.training_caption(report))


def evidence(report) -> None:
    st.subheader("Evidence", anchor=False)
    for row in present.modality_rows(report):
        if row["available"]:
            st.markdown(f"**{row['title']}** · says {row['prediction']}")
            st.progress(min(max(row["p_fake"], 0.0), 1.0), text=f"P(fake) {row['p_fake']:.2f}")
        else:
            st.markdown(f"**{row['title']}** · :gray[not judged]")
        st.caption(row["detail"])


def timeline_chart(report) -> None:
    records = present.timeline_records(report)
    if not records:
        return
    st.subheader("When: fake probability over time", anchor=False)
    series = list(present.SERIES_COLOURS)
    base = alt.Chart(alt.Data(values=records)).mark_line(point=alt.OverlayMarkDef(size=28), strokeWidth=2).encode(
        x=alt.X("time_s:Q", title="time (s)"),
        y=alt.Y("p_fake:Q", title="P(fake)", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("series:N", title=None, scale=alt.Scale(domain=series,
                                                               range=[present.SERIES_COLOURS[s] for s in series]),
                        legend=alt.Legend(orient="bottom")),
        detail="person:N",
        tooltip=[alt.Tooltip("series:N", title="signal"), alt.Tooltip("person:N"),
                 alt.Tooltip("time_s:Q", title="time (s)", format=".2f"),
                 alt.Tooltip("p_fake:Q", title="P(fake)", format=".2f")],
    )
    line = present.fake_line(report)
    rule = alt.Chart(alt.Data(values=[{"y": line}])).mark_rule(strokeDash=[6, 4], color="#555").encode(y="y:Q")
    st.altair_chart((base + rule).properties(height=260), width="stretch")
    st.caption(f"Each dot is one sampled face, or one 2-second stretch of voice. Above the dashed line "
               f"(P(fake) {line:.2f}) it counts toward FAKE.")


def frames(report) -> None:
    strip = present.frame_strip(report)
    if not strip:
        return
    st.subheader("Where: sampled frames", anchor=False)
    st.image([image for image, _ in strip], caption=[caption for _, caption in strip], width=170)
    st.caption("Red box: that face counts toward FAKE; green: toward REAL. #n is the person, then the "
               "combined P(fake).")
    overlays = present.explanation_strip(report)
    if overlays:
        st.subheader("Why: where the face model saw FAKE", anchor=False)
        st.image([image for image, _ in overlays], caption=[caption for _, caption in overlays], width=170)
        st.caption("The most suspicious faces, with Grad-CAM heatmaps of the face model: red is where the "
                   "evidence for FAKE is strongest, blue where there is none. Each map is scaled to its own face.")


def people(report) -> None:
    if len(report.tracks) <= 1:
        return
    st.subheader(f"People: {len(report.tracks)} face tracks", anchor=False)
    st.caption("Faces are linked across frames by where they are; each track is one person (or a stray "
               "detection). P(fake) is the combined score of that person's faces.")
    st.dataframe(present.track_records(report), hide_index=True)


def notes(report) -> None:
    if not report.notes:
        return
    st.subheader("What could not be judged, and notes", anchor=False)
    st.markdown("\n".join(f"- {note}" for note in report.notes))


# -- page ------------------------------------------------------------------------------------------------
def main() -> None:
    st.set_page_config(page_title="Deepfake Detector", page_icon=":material/policy:", layout="centered")
    st.title("Deepfake Detector", anchor=False)
    st.caption("Upload a video of a person talking (or a voice recording: it is judged by the voice alone). "
               "The detector scores the face and the voice, "
               "says when and where the evidence is, and what it could not judge. "
               "Settings are in the sidebar (» on a phone).")
    st.sidebar.header("Settings", anchor=False)
    detector = get_detector(video_model_picker(model_config()[0]))
    resolved = detector.resolve_settings() if detector is not None else (AnalysisSettings(), [])
    chosen = settings_panel(*resolved)
    if detector is not None:
        model_status(detector)
    cap_mb = upload_cap_mb()
    uploaded = st.file_uploader(f"Video ({', '.join(UPLOAD_TYPES)}; up to {cap_mb} MB)", type=UPLOAD_TYPES,
                                key="upload")
    result = st.session_state.get("result")
    if uploaded is None or (result is not None and result["file_id"] != uploaded.file_id):
        st.session_state.pop("result", None)  # results always belong to the video on screen
        result = None
    if uploaded is None:
        return
    video, action = st.columns([3, 2], vertical_alignment="center")
    with video:
        if is_audio_file(uploaded.name):
            st.audio(uploaded, format=uploaded.type or "audio/wav")
        else:
            st.video(uploaded, format=uploaded.type or "video/mp4")
        hint = st.empty()
    with action:
        st.markdown(f"**{uploaded.name}**  \n{uploaded.size / MB:.1f} MB")
        clicked = st.button("Analyse", type="primary", key="analyse", disabled=detector is None,
                            icon=":material/search:", width="stretch")
        explain = st.toggle("Explain the face scores", key="explain", help=HELP["explain"])
    if clicked and detector is not None:
        st.session_state.pop("result", None)
        result = analyse_upload(detector, uploaded, resolved, chosen["settings"], cap_mb, explain=explain)
        if result is not None:
            st.session_state["result"] = result
    if result is not None:
        playback = present.playback_hint(result["report"])
        if playback:
            hint.caption(playback)
        show_result(result, chosen["truth"], chosen["settings"])


if __name__ == "__main__":
    main()
