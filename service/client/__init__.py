"""`pkdot stream`: a terminal client that streams a webcam or a video file to the service's `/ws/stream`.

    sources.py   frames from an OpenCV device index or a video file, JPEG-encoded
    streamer.py  the WebSocket client: flow control (frames in flight), answers matched by `seq`, statistics
    command.py   the command line: arguments, live output (one updating line, a table, or JSON lines), exit codes
"""
