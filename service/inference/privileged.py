"""The teacher's privileged input: an uploaded biosignal (CSV or JSON) or audio file -> the array its graph takes.

Everything about the transform comes from the teacher's manifest (`preprocessing.privileged`): modality,
transform (raw | spectrogram | log-mel), channels, rate_hz, window_s and params. The arrays are made by the same
functions training uses (`pkdot_contract.preprocessing.signals`, `pkdot_contract.preprocessing.audio`).

- biosignal: the window [start_s, end_s) of the named channels (params; default [0, window_s)), z-scored unless
  params say `normalise: none`, then for `spectrogram` the log-power spectrogram of each channel over seconds
  [spectrogram_start_s, spectrogram_end_s) of the window (default 2-5, the released code's) -> (C, L) or (C, F, T').
- audio: decoded (WAV, MP3, AAC...), mixed to mono at rate_hz; the window of window_s seconds centred on the time
  of the last video frame used (kept inside the recording when it is long enough) -> log-mel (1, n_mels, frames).
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass

import numpy as np

from pkdot_contract.manifest import PrivilegedPreprocessing, TensorSpec
from pkdot_contract.preprocessing import audio as audio_pre
from pkdot_contract.preprocessing import signals
from pkdot_contract.preprocessing.media import decode_audio
from service.core.errors import BadInput, InvalidField


@dataclass
class PrivilegedInput:
    array: np.ndarray  # without the batch axis, shaped like the graph's `privileged` input
    description: dict  # what the signal was read as, for the response


def _params_for(fn, params: dict, exclude: tuple[str, ...] = ()) -> dict:
    """The manifest's transform parameters that `fn` accepts as keywords (its positional data excluded)."""
    accepted = inspect.signature(fn).parameters
    return {k: v for k, v in params.items() if k in accepted and k not in exclude}


LOG_MEL_EXCLUDE = ("audio", "sample_rate", "window_s")
MAX_SIGNAL_ABS = 1e12  # biosignal values beyond this (any unit a sensor uses is far below) are refused


def _window_args(spec: PrivilegedPreprocessing) -> dict:
    """Arguments of `biosignal_window`: params start_s, end_s (default 0 and window_s), normalise, max_pad_s."""
    p = spec.params
    args = {"start_s": float(p.get("start_s", 0.0)), "end_s": float(p.get("end_s", spec.window_s))}
    return args | {k: p[k] for k in ("normalise", "max_pad_s") if k in p}


def _spectrogram_args(spec: PrivilegedPreprocessing) -> dict:
    """Arguments of `spectrogram`: params spectrogram_start_s / spectrogram_end_s (seconds of the window),
    nperseg, noverlap, nfft, eps; the functions' defaults (the released code's) for the others."""
    p = spec.params
    args = {k: p[k] for k in ("nperseg", "noverlap", "nfft", "eps") if k in p}
    if "spectrogram_start_s" in p:
        args["start_s"] = float(p["spectrogram_start_s"])
    if "spectrogram_end_s" in p:
        args["end_s"] = float(p["spectrogram_end_s"])
    return args


def _biosignal_transform(spec: PrivilegedPreprocessing, window: np.ndarray) -> np.ndarray:
    """(C, L) window -> itself (raw) or its log-power spectrogram (C, F, T')."""
    if spec.transform == "raw":
        return window
    if spec.transform == "spectrogram":
        return signals.spectrogram(window, spec.rate_hz, **_spectrogram_args(spec))
    raise InvalidField(f"biosignal transform {spec.transform!r} is not supported")


def _biosignal(spec: PrivilegedPreprocessing, data: bytes, filename: str | None) -> tuple[np.ndarray, dict]:
    text_start = data.lstrip()[:1]
    if text_start in (b"{", b"["):
        try:
            obj = json.loads(data)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            raise BadInput(f"the signal is not valid JSON: {exc}") from None
        except RecursionError:
            raise BadInput("the signal is not valid JSON: nested too deeply") from None
        if not isinstance(obj, dict) or "rate_hz" not in obj or not isinstance(obj.get("channels"), dict):
            raise InvalidField('a JSON signal is {"rate_hz": <Hz>, "channels": {"gsr": [...], "ecg": [...], ...}}')
        rate = obj["rate_hz"]
        if not isinstance(rate, int | float) or isinstance(rate, bool):
            raise InvalidField("signal.rate_hz must be a number")
        bio = signals.validate_biosignals(float(rate), obj["channels"], name="the signal")
        if abs(bio.rate_hz - spec.rate_hz) > 0.02 * spec.rate_hz:
            raise InvalidField(f"the signal is sampled at {bio.rate_hz:g} Hz; this teacher needs {spec.rate_hz:g} Hz")
        source = "json"
    else:
        bio = signals.read_biosignal_csv(data, name=filename or "the signal", expected_rate_hz=spec.rate_hz)
        source = "biovid-csv"
    peak = max(float(np.abs(v).max()) for v in bio.channels.values())
    if peak > MAX_SIGNAL_ABS:  # their squares would overflow float32 while normalising
        raise BadInput(f"the signal has values up to {peak:.3g}; send it in the sensor's own units (at most "
                       f"{MAX_SIGNAL_ABS:g} in magnitude)")
    window = signals.biosignal_window(bio.channels, spec.rate_hz, spec.channels, **_window_args(spec))  # (C, L)
    x = _biosignal_transform(spec, window)
    seconds = len(next(iter(bio.channels.values()))) / bio.rate_hz
    return x, {"modality": "biosignal", "source": source, "rate_hz": spec.rate_hz, "seconds": round(seconds, 3),
               "channels": list(spec.channels), "transform": spec.transform}


def _audio(spec: PrivilegedPreprocessing, data: bytes, centre_s: float) -> tuple[np.ndarray, dict]:
    if spec.transform != "log-mel":
        raise InvalidField(f"audio transform {spec.transform!r} is not supported")
    rate = int(round(spec.rate_hz))
    wav = decode_audio(data, sample_rate=rate)  # (n,) float32 mono
    duration = len(wav) / rate
    if duration >= spec.window_s:
        centre_s = min(max(centre_s, spec.window_s / 2), duration - spec.window_s / 2)
    window = audio_pre.audio_window(wav, rate, centre_s, spec.window_s)  # (n_window,)
    params = _params_for(audio_pre.log_mel, spec.params, LOG_MEL_EXCLUDE)
    x = audio_pre.log_mel(window, rate, window_s=spec.window_s, **params)  # (n_mels, frames)
    return x, {"modality": "audio", "rate_hz": spec.rate_hz, "seconds": round(duration, 3),
               "window_centre_s": round(centre_s, 3), "transform": spec.transform}


def fit_to_graph(x: np.ndarray, graph_input: TensorSpec) -> np.ndarray:
    """Add leading channel axes until `x` has the graph's rank (minus batch); check every fixed dimension."""
    want = graph_input.shape[1:]
    while x.ndim < len(want):
        x = x[None]
    fixed_ok = x.ndim == len(want) and all(isinstance(w, str) or w == d for w, d in zip(want, x.shape, strict=True))
    if not fixed_ok:
        raise InvalidField(f"the signal becomes an input of shape {list(x.shape)}, the teacher takes {want}: "
                           "check its length and sampling rate")
    return np.ascontiguousarray(x, dtype=np.float32)


def privileged_input(spec: PrivilegedPreprocessing, graph_input: TensorSpec, data: bytes, filename: str | None,
                     centre_s: float = 0.0) -> PrivilegedInput:
    """Blocking (decoding and FFTs): call it from a worker thread."""
    if not data:
        raise BadInput("the signal is empty (0 bytes)")
    if spec.modality == "biosignal":
        x, description = _biosignal(spec, data, filename)
    else:
        x, description = _audio(spec, data, centre_s)
    if not np.isfinite(x).all():
        raise BadInput("the signal could not be transformed into finite values; check its values and units")
    return PrivilegedInput(fit_to_graph(x, graph_input), description)


def example_input(spec: PrivilegedPreprocessing, graph_input: TensorSpec) -> np.ndarray:
    """A silent / flat signal run through the same transform: for the warm-up and the start-up shape check."""
    if spec.modality == "biosignal":
        w = _window_args(spec)
        n = int(round((w["end_s"] - w["start_s"]) * spec.rate_hz))
        x = _biosignal_transform(spec, np.zeros((len(spec.channels), n), np.float32))  # from (C, L)
    else:
        rate = int(round(spec.rate_hz))
        params = _params_for(audio_pre.log_mel, spec.params, LOG_MEL_EXCLUDE)
        x = audio_pre.log_mel(np.zeros(int(spec.window_s * rate), np.float32), rate, window_s=spec.window_s,
                              **params)
    return fit_to_graph(x, graph_input)
