"""Training, evaluation and calibration."""
