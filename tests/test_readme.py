"""The README and the docs pages tell the truth: their runnable shell blocks run as written after the Quick start,
every `deepfake-detect` command line names only options the command has, and the report's documented key list is
what `Report.to_dict()` writes."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, moving_face_frames, speech_like, write_video
from deepfake_core import Report
from deepfake_core.cli import build_parser

RUNNABLE = "<!-- runnable -->"
# The pages this test holds to the CLI: the README and the topic pages it links to (model cards and the
# architecture page describe research commands and code, not the CLI).
PAGES = [ROOT / "README.md"] + sorted(p for p in (ROOT / "docs").glob("*.md")
                                     if not p.name.startswith(("MODEL_CARD", "ARCHITECTURE")))
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def shell_blocks(page: Path) -> list[tuple[int, str, bool]]:
    """(line number, code, marked runnable) of each ```bash block of `page`."""
    text = page.read_text()
    blocks = []
    for m in FENCE.finditer(text):
        if m.group(1) not in ("bash", "sh", "shell"):
            continue
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        blocks.append((text.count("\n", 0, m.start()) + 1, m.group(2), before.strip() == RUNNABLE))
    return blocks


RUNNABLE_BLOCKS = [(page, line, code) for page in PAGES for line, code, runnable in shell_blocks(page) if runnable]


def test_the_readme_and_the_cli_page_have_runnable_blocks():
    marked = {page.name for page, _, _ in RUNNABLE_BLOCKS}
    assert {"README.md", "cli.md", "models.md"} <= marked, marked
    # a marker that is not followed by a shell block is a typo, not a test
    for page in PAGES:
        markers = sum(line.strip() == RUNNABLE for line in page.read_text().splitlines())
        assert markers == sum(r for _, _, r in shell_blocks(page)), page.name


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory) -> Path:
    """A folder as a user's clone looks after the Quick start: `.venv` (this test run's own environment),
    `clip.mp4` (their video: a face moving across, a voice) and `videos/` (a folder of them). No models folder:
    the offline state, where the package's own files judge."""
    work = tmp_path_factory.mktemp("user")
    venv = Path(sys.prefix)
    if not (venv / "bin" / "activate").is_file() or not (venv / "bin" / "deepfake-detect").is_file():
        pytest.fail(f"run the tests from the project's virtual environment (scripts/test.sh); {venv} has no "
                    f"bin/activate or bin/deepfake-detect")
    (work / ".venv").symlink_to(venv, target_is_directory=True)
    write_video(work / "clip.mp4", moving_face_frames(40), audio=speech_like(1.6))
    (work / "videos").mkdir()
    shutil.copy(work / "clip.mp4", work / "videos" / "interview.mp4")
    return work


def user_env(home: Path) -> dict[str, str]:
    """A shell as a new user's: no venv on PATH, no DEEPFAKE_* settings, an empty home (no model cache). The
    OpenVINO conversion cache (conftest) is kept: it only saves time."""
    bin_dirs = {str(Path(sys.prefix) / "bin"), str(Path(sys.executable).parent)}
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("DEEPFAKE_") and k not in ("VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = os.pathsep.join(d for d in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)
                                  if d not in bin_dirs)
    env["HOME"] = str(home)
    if "DEEPFAKE_OPENVINO_CACHE" in os.environ:
        env["DEEPFAKE_OPENVINO_CACHE"] = os.environ["DEEPFAKE_OPENVINO_CACHE"]
    return env


@pytest.mark.parametrize("page, line, code", RUNNABLE_BLOCKS,
                         ids=[f"{p.name}:{line}" for p, line, _ in RUNNABLE_BLOCKS])
def test_runnable_block_works_as_written(page, line, code, user_dir, tmp_path):
    # The README's blocks stand alone (its own block activates the venv); a docs page's blocks run in the shell
    # the README leaves: venv active.
    prelude = "" if page.name == "README.md" else "source .venv/bin/activate\n"
    script = "set -euo pipefail\n" + prelude + code
    home = tmp_path / "home"
    home.mkdir()
    p = subprocess.run(["bash", "-c", script], cwd=user_dir, env=user_env(home), capture_output=True, text=True,
                       timeout=1800)
    where = f"{page.relative_to(ROOT)}, the block at line {line}"
    assert p.returncode == 0, f"{where} failed (exit {p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    assert "Traceback" not in p.stderr, f"{where}:\n{p.stderr[-3000:]}"


# -- command lines against the CLI's own parser ----------------------------------------------------------------
COMMAND = re.compile(r"(?:^|\s|`)(?:deepfake-detect|python -m deepfake_core|scripts/run\.sh)\s+([a-z].*)")
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def command_lines(page: Path) -> list[tuple[int, str]]:
    """(line, command) for each `deepfake-detect ...` line of a shell block (with its continuation lines) and
    each inline `deepfake-detect ...` code span of the prose."""
    found = []
    text = page.read_text()
    for line, code, _ in shell_blocks(page):
        rows = code.splitlines()
        for i, row in enumerate(rows):
            m = COMMAND.search(row.split(" # ")[0])
            if not m:
                continue
            command, j = m.group(1), i
            while (command.rstrip().endswith("\\") or (j + 1 < len(rows) and rows[j + 1].startswith(" ")
                                                        and rows[j + 1].lstrip().startswith(("[", "--")))):
                j += 1
                if j >= len(rows):
                    break
                command = command.rstrip().rstrip("\\") + " " + rows[j].split(" # ")[0].strip()
            found.append((line + 1 + i, command))
    prose = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for m in re.finditer(r"`(?:deepfake-detect|python -m deepfake_core) ([a-z][^`]*)`", prose):
        found.append((prose.count("\n", 0, m.start()) + 1, " ".join(m.group(1).split())))
    return found


def subcommand_parser(parser: argparse.ArgumentParser, words: list[str]) -> tuple[argparse.ArgumentParser, str]:
    """The (sub)parser the leading words of a command select, and the command's name."""
    name = "deepfake-detect"
    for word in words:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or word not in subs[0].choices:
            break
        parser, name = subs[0].choices[word], f"{name} {word}"
    return parser, name


def test_every_documented_command_line_names_only_options_the_cli_has():
    root = build_parser()
    checked, wrong = 0, []
    for page in PAGES:
        for line, command in command_lines(page):
            words = [w for w in command.split() if not w.startswith("-")]
            parser, name = subcommand_parser(root, words[:3])
            known = {s for a in parser._actions for s in a.option_strings}
            for option in OPTION.findall(command):
                checked += 1
                if option not in known:
                    wrong.append(f"{page.relative_to(ROOT)}:{line}: `{name}` has no {option}")
    assert not wrong, "\n".join(wrong)
    assert checked > 100  # the pages' commands were found and read


# -- the report's keys -----------------------------------------------------------------------------------------
def documented_report_keys() -> list[str]:
    text = (ROOT / "docs" / "report.md").read_text()
    block = text.split("<!-- report-keys -->", 1)[1].split("<!-- /report-keys -->", 1)[0]
    return re.findall(r"^- `(\w+)`", block, re.M)


class _Explanation:
    def to_dict(self) -> dict:
        return {}


def a_report(**extra) -> Report:
    required = {f.name: None for f in dataclasses.fields(Report)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    required.update(verdict="REAL", confidence=0.8, fused_real_prob=0.8, threshold=0.5, modalities={}, timeline=[],
                    tracks=[], media={}, counts={}, timings={}, settings={}, models={})
    return Report(**{**required, **extra})


def test_the_documented_report_keys_are_the_reports_keys():
    documented = documented_report_keys()
    assert len(documented) == len(set(documented)), "a key is listed twice"
    written = set(a_report(explanations=[_Explanation()]).to_dict())
    assert set(documented) == written, (f"documented, not written: {sorted(set(documented) - written)}; "
                                        f"written, not documented: {sorted(written - set(documented))}")
    assert "explanations" not in a_report().to_dict()  # the list says: only when asked


def test_every_report_field_reaches_the_json_or_is_display_only():
    fields = {f.name for f in dataclasses.fields(Report)}
    written = set(a_report(explanations=[_Explanation()]).to_dict())
    display_only = {"thumbnails"}  # images for the page, never in the JSON
    assert fields - display_only <= written, sorted(fields - display_only - written)
    assert written - fields == {"explanation"}, sorted(written - fields)  # the one derived key (a property)


def all_parsers(parser: argparse.ArgumentParser, name: str = "deepfake-detect"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for word, sub in action.choices.items():
                yield from all_parsers(sub, f"{name} {word}")


def test_every_cli_option_is_documented():
    text = "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
    undocumented = [f"{name} {option}" for name, parser in all_parsers(build_parser())
                    for action in parser._actions for option in action.option_strings
                    if option.startswith("--") and option != "--help"
                    and not re.search(re.escape(option) + r"(?![\w-])", text)]
    assert not undocumented, ("options no page mentions: add them to the command's synopsis in docs/ "
                              f"(cli.md, models.md, training.md, ...): {undocumented}")


# -- names of the library ---------------------------------------------------------------------------------------
def resolves(dotted: str) -> bool:
    """Whether `deepfake_core.a.b.c` is a module, or an attribute reached from the longest importable prefix."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attribute in parts[i:]:
            if not hasattr(obj, attribute):
                return False
            obj = getattr(obj, attribute)
        return True
    return False


def test_every_documented_library_name_exists():
    wrong = [f"{page.relative_to(ROOT)}: {name}" for page in PAGES
             for name in sorted(set(re.findall(r"deepfake_core(?:\.\w+)+", page.read_text()))) if not resolves(name)]
    assert not wrong, "\n".join(wrong)
