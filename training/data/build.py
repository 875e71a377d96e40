"""Datasets of one run: the configured dataset, split subject-independently, as train / validation / test."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch.utils.data import Dataset

from training.config import DataConfig
from training.data.splits import Split, make_splits
from training.errors import ConfigError


@dataclass
class RunData:
    train: Dataset
    val: Dataset
    test: Dataset
    split: Split
    num_classes: int  # pain classes (5 or 2); 0 for affect
    frame_rate: float  # of the source videos (BioVid 25 fps)
    # make(part, train, privileged): a dataset of a split part (train: sampling, augment; privileged: with the
    # biosignal or audio, by default as build_datasets was asked)
    make: Callable[..., Dataset]

    def train_eval(self, privileged: bool | None = None) -> Dataset:
        """The training subjects as evaluation sees data: deterministic frames, no augmentation."""
        return self.make(self.split.train, False, privileged)


def build_datasets(data: DataConfig, task: str, *, privileged: bool = True, strict: bool = False) -> RunData:
    """`privileged=False` leaves the privileged modality out of the items (a student that does not run its
    teacher on them; faster). The samples are the same either way: a sample whose biosignal is unusable is skipped
    in both."""
    if not data.root or not data.cache:
        raise ConfigError("data.root and data.cache are required (the dataset root and its `pkdot prepare` cache)")
    if (data.dataset == "biovid") != (task == "pain"):
        raise ConfigError(f"task {task!r} does not go with dataset {data.dataset!r} (pain: biovid, affect: affwild2)")
    if data.dataset == "biovid":
        from training.data.biovid import BioVidDataset, read_samples_csv

        samples = read_samples_csv(data.root)
        if data.pain_classes == "binary":
            samples = [s for s in samples if s.class_id in (0, 4)]
        split = _fold(make_splits(samples, data.split, k=data.folds, seed=data.split_seed,
                                  val_fraction=data.val_fraction), data)

        def make(part: list, train: bool, with_privileged: bool | None = None) -> Dataset:
            return BioVidDataset(data.root, data.cache, part, num_frames=data.num_frames, train=train,
                                 channels=data.channels, signal=data.signal, task=data.pain_classes,
                                 with_signal=privileged if with_privileged is None else with_privileged, strict=strict, normalise=data.signal_norm,
                                 augment=train and data.augment, photometric=data.photometric)

        num_classes, fps = (5 if data.pain_classes == "five" else 2), 25.0
    else:
        from training.data.affwild2 import AffWild2Dataset, index_affwild2

        entries = index_affwild2(data.root, sets="both", strict=strict)
        split = _fold(make_splits(entries, data.split, k=data.folds, seed=data.split_seed,
                                  val_fraction=data.val_fraction), data)

        def make(part: list, train: bool, with_privileged: bool | None = None) -> Dataset:
            return AffWild2Dataset(data.root, data.cache, part, sets="both", num_frames=data.num_frames,
                                   stride=data.frame_stride, target_stride=data.target_stride,
                                   with_audio=privileged if with_privileged is None else with_privileged,
                                   require_audio=True,  # the same videos for every run, with or without the audio strict=strict, augment=train and data.augment,
                                   photometric=data.photometric)

        num_classes, fps = 0, 30.0
    if not split.val:
        raise ConfigError("the split has no validation subjects (data.val_fraction = 0): epochs are chosen on "
                          "validation, never on the test fold")
    return RunData(make(split.train, True), make(split.val, False), make(split.test, False), split, num_classes, fps,
                   make)


def _fold(splits: list[Split], data: DataConfig) -> Split:
    if not 0 <= data.fold < len(splits):
        raise ConfigError(f"data.fold {data.fold} is not one of the {len(splits)} folds of {data.split}")
    return splits[data.fold]
