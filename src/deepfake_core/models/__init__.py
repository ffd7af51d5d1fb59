"""Models: the registry of pinned files (registry.py), choosing and checking the installed files
(model_files.py), downloading them (download.py, weights.py), the networks (networks.py), safe checkpoint
loading and conversion (checkpoints.py, convert.py), what runs them (runtime.py, ov_runtime.py, batchnorm.py),
calibration.json (calibration.py), and the built-in model's file (builtin/, package data).
Imports only the package root."""
