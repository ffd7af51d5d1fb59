"""Analysis: the Detector (pipeline.py: models loaded once), one Analysis per call (run.py) with its context,
background decoding and face/audio stages, the timeline, fusion and the Report (report.py), and Grad-CAM
explanations (explain.py). Imports the package root, media/, models/ and faces/."""
