"""Streams: one WebSocket connection's frames, from arrival to result.

    slot.py          newest frame wins: the one slot between the receiver and the processor (FrameSlot)
    session.py       one connection: receive, control messages, process a frame, send its result (StreamSession)
    calibration.py   a person's neutral baseline from the next N seconds of predictions (Calibration)
    registry.py      the open streams: the concurrency limit, closing them all at shutdown (StreamRegistry)
"""
