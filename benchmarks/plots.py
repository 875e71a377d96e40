"""Plots of a `pkdot bench` run (matplotlib, Agg): latency CDF per stream count, throughput vs streams, and the
model latencies per runtime at batch 1."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def latency_cdf(e2e: dict, path: Path, title: str) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for lv in e2e["levels"]:
        cdf = lv.get("rtt_cdf_ms") or []
        if cdf:
            ax.plot(cdf, np.linspace(0, 1, len(cdf)), label=f"{lv['streams']} stream{'s' if lv['streams'] > 1 else ''}")
    ax.axvline(60, color="grey", ls="--", lw=0.8)
    ax.axvline(100, color="grey", ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("round-trip time per frame (ms, log scale)")
    ax.set_ylabel("fraction of answered frames")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def throughput(e2e: dict, batching: dict | None, path: Path, title: str) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    n = [lv["streams"] for lv in e2e["levels"]]
    ax.plot(n, [lv["offered_fps"] for lv in e2e["levels"]], "k:", label="offered (15 fps per stream)")
    ax.plot(n, [lv["answered_per_s"] for lv in e2e["levels"]], "o-", label="answered, batching on")
    if batching:
        for mode, style in (("on", "s--"), ("off", "x--")):
            rows = batching["results"][mode]
            ax.plot([r["streams"] for r in rows], [r["answered_per_s"] for r in rows], style,
                    label=f"answered, batching {mode} (batching run)")
    ax.set_xlabel("concurrent streams")
    ax.set_ylabel("frames answered per second")
    ax2 = ax.twinx()
    ax2.plot(n, [lv["rtt_ms"]["p95"] for lv in e2e["levels"]], "r^-", alpha=0.6, label="RTT p95 (right axis)")
    ax2.set_ylabel("RTT p95 (ms)", color="r")
    ax2.set_yscale("log")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="upper left")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def model_latency(model: dict, path: Path, title: str) -> Path:
    plt = _plt()
    rows = [r for r in model["rows"] if r["batch"] == 1 and r["graph"] in ("step", "model")]
    models = list(dict.fromkeys(r["model"] for r in rows))
    runtimes = ["eager", "eager-1thread", "ort-fp32", "ort-int8"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    width = 0.2
    for i, rt in enumerate(runtimes):
        vals = [next((r["median_ms"] for r in rows if r["model"] == m and r["runtime"] == rt), np.nan) for m in models]
        ax.bar(np.arange(len(models)) + (i - 1.5) * width, vals, width, label=rt)
    ax.set_xticks(np.arange(len(models)), models, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("median latency, batch 1 (ms, log scale)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y", which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
