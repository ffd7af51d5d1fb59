"""Media: reading video frames (video.py), audio tracks and mel windows (audio.py), speech windows (speech.py).
Imports only the package root (errors, settings)."""
