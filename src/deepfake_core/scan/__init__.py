"""Scans over many files: `deepfake-detect scan --ray` on a Ray cluster (ray_scan.py)."""
