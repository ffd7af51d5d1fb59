"""Experiments that serve no shipped model or command: not installed with the package (it lives outside src/),
runnable from a source checkout with the dev install (`pip install -e '.[train,test]'`), from the repository root:

    python -m research.audio.speech_train ...     # the speech CNN attempt (docs/MODEL_CARD_AUDIO.md)
    python -m research.sbi_v1.selfblend ...       # SBI v1's real-only recipe (docs/MODEL_CARD_SBI_V1.md)

Their tests: `python -m pytest research/tests` (research/pytest.ini; the default test run does not collect them).
"""
