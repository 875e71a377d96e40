"""Train / validation / test splits.

Schemes (`make_splits(samples, scheme=...)`, one `Split` per fold):
    subject-kfold      (default) subjects shuffled with `seed` and dealt into k folds; fold i tests on the subjects
                       of fold i. Subject-independent.
    loso               leave one subject out: one fold per subject. Subject-independent.
    official           Aff-Wild2: test = Validation_Set, training part = Train_Set. Subject-independent.
    sample-stratified  the released PKDOT code's folds: sklearn StratifiedKFold(5, shuffle=True,
                       random_state=42) over samples. For comparison with the paper only: a person's samples land
                       in both train and test, so it LEAKS SUBJECTS and overstates accuracy.

Validation (where epochs and hyper-parameters are chosen) always comes out of the training part, never the test
fold: in the subject-independent schemes it is `val_fraction` of the training part's subjects, drawn with `seed`
and the fold number; in sample-stratified it is `val_fraction` of the training samples (stratified). Every
subject-independent split is checked: no subject is in two of train / val / test, else DatasetError.

To reproduce the paper's binary protocol, pass only the BL1 and PA4 samples (the released code stratified the
samples of the task at hand).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from training.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)

SCHEMES = ("subject-kfold", "loso", "official", "sample-stratified")
SUBJECT_INDEPENDENT = ("subject-kfold", "loso", "official")
RELEASED_SEED = 42  # the released code's StratifiedKFold random_state


def subject_of(sample: Any) -> str:
    """A sample's subject: its `subject` attribute, or for a string key `<subject>/<sample>` the part before '/'."""
    if isinstance(sample, str):
        return sample.split("/", 1)[0]
    return sample.subject


def key_of(sample: Any) -> str:
    return sample if isinstance(sample, str) else sample.key


def label_of(sample: Any) -> int:
    """A sample's class for stratification: `class_id` (BioVid) or `label`."""
    return sample.class_id if hasattr(sample, "class_id") else sample.label


@dataclass(frozen=True)
class Split:
    """One fold: the samples (as given to `make_splits`) to train on, to choose epochs on, and to report on."""

    train: list = field(default_factory=list)
    val: list = field(default_factory=list)
    test: list = field(default_factory=list)
    fold: int = 0
    scheme: str = "subject-kfold"

    def keys(self, key: Callable[[Any], str] = key_of) -> dict[str, list[str]]:
        """{"train": [...], "val": [...], "test": [...]} sample keys, e.g. to save next to a run."""
        return {"train": [key(s) for s in self.train], "val": [key(s) for s in self.val],
                "test": [key(s) for s in self.test]}

    def subjects(self, subject: Callable[[Any], Hashable] = subject_of) -> dict[str, set]:
        return {"train": {subject(s) for s in self.train}, "val": {subject(s) for s in self.val},
                "test": {subject(s) for s in self.test}}


def check_subject_disjoint(split: Split, subject: Callable[[Any], Hashable] = subject_of) -> None:
    """Raise DatasetError when a subject is in two of train / val / test."""
    parts = split.subjects(subject)
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        both = parts[a] & parts[b]
        if both:
            raise DatasetError(f"{split.scheme} fold {split.fold}: subject(s) {sorted(map(str, both))[:5]} in both "
                               f"{a} and {b}; the split is not subject-independent")


def make_splits(samples: Sequence[Any], scheme: str = "subject-kfold", k: int = 5, seed: int | None = None,
                val_fraction: float = 0.2, *, subject: Callable[[Any], Hashable] = subject_of,
                label: Callable[[Any], int] = label_of) -> list[Split]:
    """The folds of `samples` under `scheme` (see the module docstring); deterministic for a given seed.

    samples: BioVidSample, AffWild2Entry, string keys `<subject>/<sample>`, or anything `subject` / `label` accept.
    k: folds (subject-kfold, sample-stratified; ignored by loso and official). seed: None = 0, or 42 for
    sample-stratified (the released code). val_fraction: share of the training part held out for validation
    (subjects, or samples for sample-stratified); 0 = no validation set.
    """
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown split scheme {scheme!r}: choose one of {', '.join(SCHEMES)}")
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), not {val_fraction}")
    if not samples:
        raise ConfigError("no samples to split")
    seed = (RELEASED_SEED if scheme == "sample-stratified" else 0) if seed is None else seed
    if scheme == "sample-stratified":
        return _sample_stratified(samples, k, seed, val_fraction, label)

    subjects = np.array(sorted({subject(s) for s in samples}, key=str), dtype=object)
    if scheme == "official":
        test_sets = [{subject(s) for s in samples if s.set_name == "Validation_Set"}]
        if not test_sets[0] or len(test_sets[0]) == len(subjects):
            raise ConfigError("the official split needs samples of both Train_Set and Validation_Set")
    elif scheme == "loso":
        test_sets = [{s} for s in subjects]
    else:
        if not 2 <= k <= len(subjects):
            raise ConfigError(f"subject-kfold needs 2 <= k <= number of subjects ({len(subjects)}), not k={k}")
        perm = np.random.default_rng(seed).permutation(subjects)
        test_sets = [set(fold) for fold in np.array_split(perm, k)]

    splits = []
    for i, test_subjects in enumerate(test_sets):
        pool = [s for s in subjects if s not in test_subjects]  # sorted
        n_val = max(1, round(val_fraction * len(pool))) if val_fraction > 0 else 0
        if len(pool) - n_val < 1:
            raise ConfigError(f"{scheme} fold {i}: {len(pool)} training subject(s) cannot give {n_val} for validation "
                              "and keep one for training")
        val_idx = np.random.default_rng([seed, i]).choice(len(pool), n_val, replace=False)
        val_subjects = {pool[j] for j in val_idx}
        split = Split(train=[s for s in samples if subject(s) not in test_subjects | val_subjects],
                      val=[s for s in samples if subject(s) in val_subjects],
                      test=[s for s in samples if subject(s) in test_subjects], fold=i, scheme=scheme)
        check_subject_disjoint(split, subject)
        splits.append(split)
    return splits


def _sample_stratified(samples: Sequence[Any], k: int, seed: int, val_fraction: float,
                       label: Callable[[Any], int]) -> list[Split]:
    from sklearn.model_selection import StratifiedKFold, train_test_split

    log.warning("sample-stratified folds put a person's samples in both train and test (subject leakage); "
                "use them only to compare with the released PKDOT code")
    y = np.array([label(s) for s in samples])
    splits = []
    for i, (train_idx, test_idx) in enumerate(StratifiedKFold(k, shuffle=True, random_state=seed).split(y, y)):
        val_idx: np.ndarray = np.array([], dtype=np.int64)
        if val_fraction > 0:
            train_idx, val_idx = train_test_split(train_idx, test_size=val_fraction, random_state=seed,
                                                  stratify=y[train_idx])
        splits.append(Split(train=[samples[j] for j in sorted(train_idx)], val=[samples[j] for j in sorted(val_idx)],
                            test=[samples[j] for j in test_idx], fold=i, scheme="sample-stratified"))
    return splits
