"""Triton Inference Server model configuration (`config.pbtxt`): a writer and a reader for the subset we write.

A model folder is a Triton model repository: `<graph>/config.pbtxt` + `<graph>/1/model.onnx`, the model named
after its directory. Dims are given without the batch axis (Triton adds it: `max_batch_size` > 0), and requests
are batched by the dynamic batcher. The format is protobuf text format (tritonserver's `ModelConfig` message).
"""

from __future__ import annotations

import re

from pkdot_contract.manifest import GraphSpec

TRITON_DTYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int64": "TYPE_INT64", "int32": "TYPE_INT32",
                 "int8": "TYPE_INT8", "uint8": "TYPE_UINT8", "bool": "TYPE_BOOL"}
PLATFORM = "onnxruntime_onnx"
DEFAULT_MAX_BATCH_SIZE = 64
DEFAULT_QUEUE_DELAY_US = 1000


def _tensors(kind: str, specs: list) -> list[str]:
    lines = [f"{kind} ["]
    for i, t in enumerate(specs):
        dims = ", ".join(str(d) for d in t.shape[1:])
        lines += ["  {", f'    name: "{t.name}"', f"    data_type: {TRITON_DTYPES[t.dtype]}", f"    dims: [ {dims} ]",
                  "  }" + ("," if i < len(specs) - 1 else "")]
    return [*lines, "]"]


def triton_config(name: str, graph: GraphSpec, max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
                  queue_delay_us: int = DEFAULT_QUEUE_DELAY_US) -> str:
    """config.pbtxt text for one graph whose tensors all have the batch axis first."""
    for t in (*graph.inputs, *graph.outputs):
        if not t.shape or t.shape[0] != "batch" or any(not isinstance(d, int) for d in t.shape[1:]):
            raise ValueError(f"tensor {t.name!r}: Triton config needs shape ['batch', fixed dims...], got {t.shape}")
    lines = [f'name: "{name}"', f'platform: "{PLATFORM}"', f"max_batch_size: {max_batch_size}",
             *_tensors("input", graph.inputs), *_tensors("output", graph.outputs),
             "dynamic_batching {", f"  max_queue_delay_microseconds: {queue_delay_us}", "}",
             "instance_group [", "  {", "    kind: KIND_AUTO", "    count: 1", "  }", "]"]
    return "\n".join(lines) + "\n"


# -- reading (the subset of protobuf text format the writer produces, enough to check a folder) ------------------

_TOKEN = re.compile(r'\s*(?:(#[^\n]*)|("(?:[^"\\]|\\.)*")|([{}\[\]:,])|([^\s{}\[\]:,"#]+))')


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            if text[pos:].strip():
                raise ValueError(f"config.pbtxt: cannot parse at {text[pos:pos + 20]!r}")
            break
        pos = m.end()
        if m.group(1) is None:
            out.append(next(g for g in m.groups()[1:] if g is not None))
    return out


def _value(tok: str) -> str | int | float:
    if tok.startswith('"'):
        return tok[1:-1]
    for cast in (int, float):
        try:
            return cast(tok)
        except ValueError:
            pass
    return tok  # an enum name, e.g. TYPE_FP32


def _message(tokens: list[str], i: int, end: str | None) -> tuple[dict, int]:
    """Fields until `end` ('}' or None for the whole text); a repeated field becomes a list."""
    msg: dict = {}
    while i < len(tokens) and tokens[i] != end:
        key = tokens[i]
        i += 1
        if tokens[i] == ":":
            i += 1
        if tokens[i] == "[":
            items, i = [], i + 1
            while tokens[i] != "]":
                if tokens[i] == "{":
                    item, i = _message(tokens, i + 1, "}")
                    items.append(item)
                else:
                    items.append(_value(tokens[i]))
                i += 1
                if tokens[i] == ",":
                    i += 1
            value = items
        elif tokens[i] == "{":
            value, i = _message(tokens, i + 1, "}")
        else:
            value = _value(tokens[i])
        i += 1
        if key in msg:
            old = msg[key]
            msg[key] = (old if isinstance(old, list) else [old]) + (value if isinstance(value, list) else [value])
        else:
            msg[key] = value
    return msg, i


def read_triton_config(text: str) -> dict:
    """Parse config.pbtxt into nested dicts/lists (repeated fields are lists; scalars keep their type)."""
    try:
        msg, _ = _message(_tokens(text), 0, None)
    except IndexError:
        raise ValueError("config.pbtxt: unbalanced braces or brackets") from None
    return msg
