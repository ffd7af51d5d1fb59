"""Analysis: the state and the steps of one `Detector.analyze` call (a new object per call, so that one
Detector can analyse files in several threads at once)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import NoVideoStream, UnreadableMedia
from ..limits import Deadline
from ..media.video import probe, sample_indices
from ..models.model_files import files_missing
from ..models.registry import VIDEO_FILES
from ..settings import AnalysisSettings
from .audio_stage import AudioResult, check_audio_duration, score_audio
from .context import STAGES, Context, Progress, StageDetector
from .face_stage import FaceScores, frame_faces, score_faces
from .fusion import fuse, video_p_fake
from .prefetch import Background
from .report import FAKE, NOT_APPLICABLE, REAL, UNCERTAIN, ModalityResult, Reason, Report, Thumbnail, TimelineRow
from .timeline import match_windows, modality_result, stray, track_ids, tracks


class Analysis(Context):
    """One file's analysis by `detector` (a pipeline.Detector): `run()` returns its Report. The stages see it
    as their Context."""

    def __init__(self, detector: StageDetector, path: Path, settings: AnalysisSettings, notify: Progress,
                 display_name: str | None = None, notes: Sequence[str] = ()):
        super().__init__(detector, path, settings, notify, batch=max(settings.batch_size, detector.min_batch),
                         deadline=Deadline(settings.max_analysis_s, path.name))
        self.started = time.perf_counter()
        self.display_name = display_name  # the name the report gives the file, instead of its path
        self.notes = [*detector.load_notes, *notes]
        self.audio = AudioResult()
        self.audio_file = {"path": str(path)}  # the report's `media` when there is no video track to probe
        self.sampled = 0  # frames read of those planned
        self.thumbnails: list[Thumbnail] = []

    def run(self) -> Report:
        self.notify(0.0, "reading the file")
        try:
            with self.timer("probe_decode"):
                self.info = probe(self.path, self.settings)
        except NoVideoStream:
            return self._voice_only("the file has no video track")
        if self.settings.audio_only:
            return self._voice_only("--audio-only")
        d = self.detector
        if d.video is None:
            raise files_missing([VIDEO_FILES[-1]], d.models_dir, [str(d.models_dir)])
        if self.info.is_still_image:
            return self._not_applicable(Reason.STILL_IMAGE)
        indices = sample_indices(self.info.frame_count, self.settings.frame_skip, self.settings.max_samples)
        if not indices:
            self._score_audio()
            return self._not_applicable(Reason.TOO_SHORT)
        # Frames are decoded, searched for faces and cropped in a background thread while this one runs
        # the networks (the audio first, then the faces as they come).
        faces = frame_faces(self, indices, decode_thread=d.overlap)
        if d.overlap:
            faces = Background(faces, depth=2 * self.batch)
        with contextlib.closing(faces):
            self._score_audio()
            try:
                scores = score_faces(self, faces, len(indices))
            except UnreadableMedia as e:  # not one frame decoded: judge the audio alone, if there is one
                if self.stats.frames_decoded or not self.audio.windows:
                    raise
                self.notes.append(f"video not judged: {e}")
                return self._not_applicable(Reason.VIDEO_UNREADABLE)
        self._count_frames(len(indices))
        self.thumbnails = scores.thumbnails
        if not scores.rows:
            return self._not_applicable(Reason.NO_FACE)
        with self.timer("fusion_report"):
            report = self._fused_report(scores)
        self.notify(1.0, "done")
        return report

    def _score_audio(self) -> None:
        self.audio = score_audio(self)
        self.notes.extend(self.audio.notes)

    def _count_frames(self, planned: int) -> None:
        if self.stats.error:
            self.notes.append(self.stats.error)
        self.sampled = self.stats.frames_converted
        if self.sampled < planned and not self.stats.error:
            self.notes.append(f"the video had fewer frames than its header says: {self.sampled} of "
                              f"{planned} planned samples were read")

    def _voice_only(self, why: str) -> Report:
        """A report judged by the voice alone (an audio file, or --audio-only): the mean P(fake) of the speech
        windows against the threshold; NOT_APPLICABLE when there is no audio model or no speech."""
        s = self.settings
        self.notes.append(f"judged by the voice alone ({why})")
        if self.detector.audio is None:
            return self._not_applicable(Reason.NO_AUDIO_MODEL)
        if self.info is None:
            check_audio_duration(self.path, s.max_duration_s)
        self._score_audio()
        if self.info is None:
            self.audio_file["audio_only"] = True
        if not self.audio.windows:
            return self._not_applicable(Reason.NO_AUDIO_TRACK if self.audio.no_track else Reason.NO_SPEECH)
        with self.timer("fusion_report"):
            p_fake = np.array([w.p_fake for w in self.audio.windows])
            fused_real = float(1.0 - p_fake.mean())
            verdict = REAL if fused_real > s.threshold else FAKE
            confidence = fused_real if verdict == REAL else 1.0 - fused_real
            reason = None
            if s.abstain_below is not None and confidence < s.abstain_below:
                verdict, reason = UNCERTAIN, Reason.ABSTAINED
            modalities = {"video": ModalityResult(available=False, note="voice-only analysis"),
                          "audio": modality_result(p_fake, np.ones(len(p_fake)))}
        self.notify(1.0, "done")
        return self._report(verdict, reason, confidence, fused_real, modalities, [], [])

    # -- report --------------------------------------------------------------------------------------
    def _fused_report(self, scores: FaceScores) -> Report:
        s, d, windows = self.settings, self.detector, self.audio.windows
        rows = scores.rows
        times = [t for _, t, _ in rows]
        matched = match_windows(times, [(w.start_s, w.end_s) for w in windows]) if windows else None
        audio_rows = self.audio.logits[matched] if matched is not None else None
        fused = fuse(scores.logits, audio_rows, s.fusion, s.audio_temperature, s.video_temperature,
                     s.adaptive_tau, s.min_weight)
        ids = track_ids(rows)
        lone = stray(ids)
        timeline = []
        for i, (index, t, box) in enumerate(rows):
            timeline.append(TimelineRow(
                time_s=round(t, 4), frame_index=index, box=[box.x1, box.y1, box.x2, box.y2], detector=box.method,
                face_confidence=box.confidence, track=ids[i], video_p_fake=float(fused.video_probs[i, 0]),
                audio_window=int(matched[i]) if matched is not None else None,
                audio_p_fake=float(fused.audio_probs[i, 0]) if fused.audio_probs is not None else None,
                fused_p_fake=float(fused.probs[i, 0]), weight_video=float(fused.w_video[i]),
                weight_audio=float(fused.w_audio[i]), stray=bool(lone[i])))
        # Faces of tracks seen in a single sampled frame (while another track spans several) are stray
        # detections: shown and counted, but they do not decide the verdict.
        counted = ~lone
        fused_real = 1.0 - video_p_fake(fused.probs[counted, 0], d.video_aggregation)
        verdict = REAL if fused_real > s.threshold else FAKE
        confidence = fused_real if verdict == REAL else 1.0 - fused_real
        reason = None
        abstain_below = s.abstain_below if s.abstain_below is not None else d.video_abstain_below
        if abstain_below is not None and confidence < abstain_below:
            verdict, reason = UNCERTAIN, Reason.ABSTAINED
        modalities = {
            "video": modality_result(fused.video_probs[counted, 0], fused.w_video[counted], d.video_aggregation),
            "audio": self._audio_modality(fused.w_audio[counted] if matched is not None else None),
        }
        return self._report(verdict, reason, confidence, fused_real, modalities, timeline,
                            tracks(timeline, s.threshold, d.video_aggregation))

    def _audio_modality(self, weights: np.ndarray | None) -> ModalityResult:
        if not self.audio.windows:
            why = self.audio.not_judged if self.detector.audio is not None else self.detector.audio_missing
            return ModalityResult(available=False, note=why or "no audio")
        return modality_result(np.array([w.p_fake for w in self.audio.windows]), weights)

    def _not_applicable(self, reason: Reason) -> Report:
        modalities = {
            "video": ModalityResult(available=False, note=reason.replace("_", " ")),
            "audio": self._audio_modality(None),
        }
        self.notify(1.0, "done")
        return self._report(NOT_APPLICABLE, reason, None, None, modalities, [], [])

    def _media(self) -> dict:
        media = self.info.to_dict() if self.info is not None else dict(self.audio_file)
        if self.display_name is not None:
            media["path"] = self.display_name
        return media

    def _report(self, verdict, reason, confidence, fused_real, modalities, timeline, track_list) -> Report:
        timings = {stage: round(self.timer.seconds.get(stage, 0.0), 4) for stage in STAGES}
        timings["total"] = round(time.perf_counter() - self.started, 4)
        return Report(
            verdict=verdict, reason=reason, confidence=confidence, fused_real_prob=fused_real,
            threshold=self.settings.threshold, modalities=modalities, timeline=timeline, tracks=track_list,
            media=self._media(),
            counts={
                "frames_decoded": self.stats.frames_decoded,
                "frames_sampled": self.sampled,
                "frames_with_faces": len({r.frame_index for r in timeline}),
                "faces": len(timeline),
                "tracks": len(track_list),
                "stray_detections": sum(r.stray for r in timeline),
                "audio_windows": len(self.audio.windows),
            },
            timings=timings, settings=self.settings.to_dict(), models=self.detector.describe_models(),
            audio_windows=self.audio.windows, notes=self.notes,
            file=self.display_name if self.display_name is not None else self.path.name,
            thumbnails=self.thumbnails,
        )
