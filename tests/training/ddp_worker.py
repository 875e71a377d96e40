"""One rank of the distributed-training test (started by torchrun): a few teacher steps, then its weights saved."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist

from training.config import load_config
from training.data.build import build_datasets
from training.engine import Trainer, set_seed
from training.objectives import TeacherObjective
from training.train import build_model


def main(root: str, cache: str, out: str) -> None:
    models = ("models.teacher={'visual_cfg': {'frame_dim': 16, 'out_dim': 32, 'width': 0.25, 'hidden_dim': 16}, "
              "'privileged_cfg': {'out_dim': 32, 'channels': [8, 8, 16]}, 'fusion_dim': 32, 'num_tokens': 2, "
              "'num_heads': 2}")
    cfg = load_config(None, [f"data.root={root!r}", f"data.cache={cache!r}", "data.num_frames=4", "data.folds=3",
                             "data.val_fraction=0.5", "optim.batch_size=2", f"out={out!r}", models, "threads=1"])
    set_seed(cfg.seed)
    torch.set_num_threads(1)
    data = build_datasets(cfg.data, cfg.task)
    objective = TeacherObjective(build_model(cfg, data.num_classes), cfg.task)
    trainer = Trainer(cfg, objective, data.num_classes, progress=False)
    initial = {k: v.detach().clone() for k, v in objective.model.named_parameters()}
    trainer.train_epoch(trainer._loader(data.train, train=True), epoch=0, max_steps=3)
    rank = dist.get_rank()
    # parameters, not buffers: DDP re-broadcasts BatchNorm statistics from rank 0 at the start of each forward
    final = {k: v.detach() for k, v in objective.model.named_parameters()}
    torch.save({"initial": initial, "final": final, "world": dist.get_world_size()},
               Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:4])
