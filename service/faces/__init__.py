"""Faces: where in the frame the face is.

    detectors.py   DetectorPool: MediaPipe detectors shared by the worker threads, as each manifest names them
    tracker.py     FaceTracker: detect-then-track over one stream's frames
"""
