"""Options are declared once, on the dataclass fields: every analysis-settings option of the commands and every
settings widget of the page maps to exactly one AnalysisSettings field, every `train` option of TrainConfig to
one TrainConfig field, and the defaults the help texts name are the fields' defaults."""

from __future__ import annotations

import argparse
import dataclasses
import re

from deepfake_core.cli import build_parser
from deepfake_core.cli.common import settings_from_args
from deepfake_core.cli.options import given_values, option_fields
from deepfake_core.settings import AnalysisSettings, widget_fields
from deepfake_core.train.config import PrepareOptions, TrainConfig

ANALYSIS_COMMANDS = ("analyze", "scan", "evaluate", "calibrate")


def subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices[name]


def group_actions(p: argparse.ArgumentParser, title: str) -> list[argparse.Action]:
    [group] = [g for g in p._action_groups if g.title == title]
    return [a for a in group._group_actions]


def test_every_analysis_option_maps_to_one_settings_field():
    fields = {f.name for f in dataclasses.fields(AnalysisSettings)}
    declared = {f.name for f in option_fields(AnalysisSettings)}
    assert declared  # the control: some fields declare options
    for command in ANALYSIS_COMMANDS:
        actions = [a for a in group_actions(subparser(command), "analysis settings") if a.dest != "no_calibration"]
        dests = [a.dest for a in actions]
        assert len(dests) == len(set(dests)), f"{command}: an option repeated"
        assert set(dests) == declared, f"{command}: options and fields drift: {set(dests) ^ declared}"
        assert set(dests) <= fields


def test_every_page_widget_maps_to_one_settings_field():
    from deepfake_core.webapp import streamlit_app

    import inspect

    source = inspect.getsource(streamlit_app.settings_panel)
    # the panel makes the settings widgets from the fields; only the ground truth is its own
    assert re.findall(r"st\.(?:slider|selectbox|checkbox|number_input|toggle)\(", source) == ["st.selectbox("]
    assert "ground truth" in source.lower()
    widgets = [f.name for f in widget_fields(AnalysisSettings)]
    assert widgets == ["fusion", "audio_temperature", "threshold", "abstain_below", "frame_skip", "max_samples"]
    for f in widget_fields(AnalysisSettings):
        w = f.metadata["widget"]
        if w.kind != "select":  # the page's range lies inside the valid one
            low, high = f.metadata.get("range") or (f.metadata["minimum"], float("inf"))
            assert low <= w.low < w.high <= high, f.name


def test_help_texts_name_the_fields_defaults():
    p = subparser("analyze")
    helps = {a.dest: a.help for a in group_actions(p, "analysis settings")}
    assert "(default: 5)" in helps["frame_skip"] and "(default: 60)" in helps["max_samples"]
    assert "else 2.0" in helps["audio_temperature"] and "(default: 1800;" in helps["max_analysis_s"]
    assert "(default: equal;" in helps["fusion"]


def test_the_option_values_become_settings():
    p = subparser("analyze")
    args = p.parse_args(["clip.mp4", "--frame-skip", "3", "--time-budget", "0", "--audio-only", "--fusion", "max"])
    assert given_values(args, AnalysisSettings) == {"frame_skip": 3, "max_analysis_s": None, "audio_only": True,
                                                    "fusion": "max"}
    s = settings_from_args(args)
    assert (s.frame_skip, s.max_analysis_s, s.audio_only, s.fusion) == (3, None, True, "max")
    assert settings_from_args(p.parse_args(["clip.mp4"])) == AnalysisSettings()  # nothing given: the defaults


def test_every_train_option_of_trainconfig_maps_to_one_field():
    p = subparser("train")
    declared = {f.name for f in option_fields(TrainConfig)}
    dests = [a.dest for a in p._actions]
    assert declared <= set(dests)
    assert all(dests.count(name) == 1 for name in declared)
    args = p.parse_args(["video", "cache", "--out", "run", "--no-augment", "--epochs", "2"])
    config = TrainConfig(**given_values(args, TrainConfig))
    assert (config.modality, config.augment, config.epochs, config.balance) == ("video", False, 2, True)
    assert dataclasses.replace(config, augment=True, epochs=10) == TrainConfig("video")  # the rest: defaults


def test_every_prepare_option_maps_to_one_field():
    p = subparser("prepare")
    declared = {f.name for f in option_fields(PrepareOptions)}
    dests = [a.dest for a in p._actions]
    assert declared <= set(dests) and all(dests.count(name) == 1 for name in declared)
    args = p.parse_args(["data", "--out", "cache", "--no-audio", "--frame-skip", "3", "--max-crop-side", "96"])
    options = PrepareOptions(**given_values(args, PrepareOptions))
    assert (options.audio, options.video, options.frame_skip, options.max_crop_side) == (False, True, 3, 96)
    assert dataclasses.replace(options, audio=True, frame_skip=5, max_crop_side=None) == PrepareOptions()
    # the defaults analyze uses, declared once on AnalysisSettings
    analysis = AnalysisSettings()
    assert (PrepareOptions().frame_skip, PrepareOptions().window_s) == (analysis.frame_skip, analysis.audio_window_s)
    helps = {a.dest: a.help for a in p._actions}
    assert "(default: 5)" in helps["frame_skip"] and "(default: 16)" in helps["frames_per_video"]
