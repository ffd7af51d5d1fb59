"""The analysis's audio stage: decode the track, cut it into windows, score them with the audio model.

Two front ends, chosen by the loaded audio model: the original mel-spectrogram Xception (`score_mel`:
decoded a chunk at a time, never past the video's span) and the built-in speech CNN (`score_speech`). Both
return an AudioResult, with the reason as a field when the audio could not be judged."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
import numpy as np

from ..media.audio import SAMPLE_RATE, AudioStats, audio_chunks, mel_batches, read_audio
from .context import Context
from ..errors import MediaTooLarge, UnreadableMedia
from .fusion import softmax
from ..models.networks import is_speech_model
from .report import AudioWindow
from ..media.speech import has_speech, speech_windows

NOT_JUDGED = "audio not judged: "  # how a note saying why the audio was not judged begins


@dataclass
class AudioResult:
    windows: list[AudioWindow] = field(default_factory=list)  # the scored windows, in time order
    logits: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # (len(windows), 2) raw model output
    notes: list[str] = field(default_factory=list)  # for the report, in order
    not_judged: str | None = None  # why the audio was not judged at all (the audio modality's note)
    no_track: bool = False  # the file has no audio track

    def skip(self, why: str, no_track: bool = False) -> AudioResult:
        """This result, noting that the audio is not judged and why."""
        self.not_judged, self.no_track = why, no_track
        self.notes.append(NOT_JUDGED + why)
        return self

    def note_speech(self, kept: int, looked: int) -> None:
        if looked and not kept:
            self.skip(f"no speech in the audio track ({looked} windows looked at)")
        elif kept < looked:
            self.notes.append(f"{looked - kept} of {looked} audio windows hold no speech and were not scored")

    def scored(self, logits: np.ndarray, spans: list[tuple[float, float]], temperature: float) -> AudioResult:
        self.logits = logits
        p_fake = softmax(logits / temperature)[:, 0]
        self.windows = [AudioWindow(i, a, b, float(p)) for i, ((a, b), p) in enumerate(zip(spans, p_fake))]
        return self


def score_audio(run: Context) -> AudioResult:
    """The audio of `run`'s file scored by the detector's audio model (an empty result without one)."""
    if run.detector.audio is None:
        return AudioResult()
    if is_speech_model(run.detector.audio.spec):
        return score_speech(run)
    return score_mel(run)


def score_mel(run: Context) -> AudioResult:
    """The original audio model: every 2 s mel window that holds speech, decoded and scored chunk by chunk."""
    d, s, result = run.detector, run.settings, AudioResult()
    run.notify(0.02, "decoding audio")
    # Decoded a chunk at a time (never whole), and never past the video's span or the duration limit.
    limit = s.max_duration_s
    if run.info is not None and run.info.duration_s > 0:
        limit = min(limit, run.info.duration_s + s.audio_window_s)
    stats = AudioStats()
    chunks = audio_chunks(run.path, SAMPLE_RATE, limit, stats)
    speech: dict = {}
    batches = mel_batches(chunks, run.batch, window_s=s.audio_window_s, overlap=s.audio_overlap,
                          keep=has_speech, counts=speech)
    logits, spans = [], []
    try:
        while True:
            run.deadline.check("scoring the audio")
            with run.timer("audio_decode_mel"):
                batch = next(batches, None)
            if batch is None:
                break
            with run.timer("audio_model"):
                logits.append(d.score(d.audio, batch[0], run.batch))
            spans.extend(batch[1])
            run.notify(0.05, f"scored {len(spans)} audio windows")
    except UnreadableMedia as e:  # a damaged audio track: the video is judged alone
        return result.skip(f"the audio track could not be decoded ({e})")
    finally:
        batches.close()
    if not stats.has_track:
        return result.skip("the file has no audio track", no_track=True)
    if stats.stopped_at_limit:
        if run.info is None:  # an audio-only file longer than it declared
            raise MediaTooLarge(f"{run.path.name!r} holds more than {s.max_duration_s:.0f} s of audio, over "
                                f"the limit (raise max_duration_s to analyse it)")
        result.notes.append(f"audio judged over the video's span only (its first {stats.seconds:.1f} s)")
    if stats.error:
        result.notes.append(stats.error)
    if not speech.get("looked"):
        return result.skip(f"the track is {stats.seconds:.2f} s, shorter than one {s.audio_window_s:.1f} s "
                           f"window (80 % needed)")
    result.note_speech(speech["kept"], speech["looked"])  # windows without speech are not scored
    if not spans:
        return result
    return result.scored(np.concatenate(logits), spans, s.audio_temperature)


def score_speech(run: Context) -> AudioResult:
    """The built-in audio model: only the windows that hold speech, each as a log filterbank."""
    d, s, result = run.detector, run.settings, AudioResult()
    run.notify(0.02, "decoding audio")
    with run.timer("audio_decode_mel"):
        samples = read_audio(run.path)
    if samples is None:
        return result.skip("the file has no audio track", no_track=True)
    with run.timer("audio_decode_mel"):
        x, spans, looked = speech_windows(samples, d.audio.metadata.get("front_end", "logmel"),
                                          s.audio_window_s, s.audio_overlap)
    if not looked:
        return result.skip(f"the track is {len(samples) / SAMPLE_RATE:.2f} s, too short to hold speech")
    result.note_speech(len(spans), looked)
    if not spans:
        return result
    run.notify(0.05, f"scoring {len(spans)} speech windows")
    with run.timer("audio_model"):
        logits = d.score(d.audio, x, run.batch)
    return result.scored(logits, spans, s.audio_temperature)


def check_audio_duration(path: Path, limit_s: float) -> None:
    """Raise MediaTooLarge for an audio file whose header says it lasts longer than `limit_s` (before decoding
    it); a file without a usable header is left to the decoder."""
    import av

    try:
        with av.open(str(path), mode="r", metadata_errors="ignore") as container:
            duration = container.duration / av.time_base if container.duration else None
    except av.error.FFmpegError:
        return
    if duration is not None and duration > limit_s:
        raise MediaTooLarge(f"{path.name!r} lasts {duration:.0f} s, over the {limit_s:.0f} s limit "
                            f"(raise max_duration_s to analyse it)")
