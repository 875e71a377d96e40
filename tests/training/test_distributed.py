"""DistributedDataParallel with torchrun: two CPU processes (gloo) train a few steps and end with equal weights."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_ranks_hold_identical_weights(tiny_biovid, tmp_path: Path) -> None:
    root, cache = tiny_biovid
    worker = Path(__file__).with_name("ddp_worker.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), str(worker), str(root), str(cache), str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0]["world"] == ranks[1]["world"] == 2
    changed = False
    for key, w0 in ranks[0]["final"].items():
        torch.testing.assert_close(ranks[1]["final"][key], w0, rtol=0, atol=0)  # bit-identical after all-reduce
        changed |= not torch.equal(w0, ranks[0]["initial"][key])
    assert changed, "training did not change the weights"
