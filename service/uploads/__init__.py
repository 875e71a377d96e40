"""Uploads: a REST request's image, clip or video (and a teacher's signal), from multipart form to response.

    form.py      the multipart form read into memory, its file parts checked against the limits
    clips.py     an uploaded clip as face frames: decode, detect, crop, only the last T kept (scan_clip)
    predict.py   the response bodies: a student's prediction, or the teacher and the student side by side
"""
