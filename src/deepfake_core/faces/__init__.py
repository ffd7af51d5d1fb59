"""Faces: the face finders (detect.py: res10 DNN, Haar, the hybrid; crop_face), res10 in plain PyTorch
(res10_net.py) or OpenVINO (res10_ov.py) with their shared post-processing (res10_post.py), and face tracks
across frames (tracking.py). Imports the package root and models/ (the pinned res10 files, the OpenVINO cache)."""
