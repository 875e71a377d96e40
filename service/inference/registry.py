"""The registry of loaded models: every folder under `models_dir` loaded (`service.inference.models`), one
micro-batcher per graph, the default student per task, and the teachers.

A folder that does not load stops start-up, or with `skip_broken_models` it is left out and listed in /readyz.
"""

from __future__ import annotations

import logging
from concurrent.futures import Executor
from pathlib import Path

from pkdot_contract.manifest import ModelFolderError, load_manifest
from pkdot_contract.tasks import TASKS
from service.core.config import Settings
from service.core.errors import ModelLoadError, NotFound
from service.core.metrics import Metrics
from service.inference.batching import MicroBatcher
from service.inference.models import LoadedModel, load_model

log = logging.getLogger(__name__)


class ModelRegistry:
    """Every loaded model, the default student per task, and the teachers."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.models: dict[str, LoadedModel] = {}
        self.skipped: list[tuple[str, str]] = []  # (folder, error) of broken folders left out
        self.defaults: dict[str, str] = {}

    def folders(self) -> list[Path]:
        root = self.settings.models_dir
        if not root.is_dir():
            return []
        found = sorted(p.parent for p in root.glob("*/manifest.json"))
        if self.settings.models:
            found = [p for p in found if p.name in self.settings.models]
        return found

    def load(self) -> None:
        """Load every folder (blocking; call it from a worker thread). Raises ModelLoadError unless skipping."""
        s = self.settings
        for folder in self.folders():
            try:
                role = load_manifest(folder, verify=False).role
                if role == "teacher" and s.teacher == "off":
                    log.info("teacher not loaded (teacher=off)", extra={"folder": str(folder)})
                    continue
                model = load_model(folder, s)
                if model.name in self.models:
                    raise ModelLoadError(f"{folder}: a model named {model.name!r} is already loaded from "
                                         f"{self.models[model.name].folder}")
            except (ModelFolderError, ModelLoadError) as exc:
                message = str(exc)
                if not s.skip_broken_models:
                    log.error("model folder refused", extra={"folder": str(folder), "error": message})
                    raise ModelLoadError(message) from None
                log.warning("model folder skipped", extra={"folder": str(folder), "error": message})
                self.skipped.append((str(folder), message))
                continue
            self.models[model.name] = model
            log.info("model loaded", extra={"model": model.name, "version": model.manifest.version,
                                            "task": model.task, "role": model.role, "provider": model.provider,
                                            "load_ms": round(model.load_seconds * 1000, 1)})
        self._choose_defaults()
        if s.teacher == "on" and not any(m.role == "teacher" for m in self.models.values()):
            raise ModelLoadError(f"teacher=on but no teacher model folder was loaded from {s.models_dir}")

    def _choose_defaults(self) -> None:
        for task in TASKS:
            students = [m for m in self.models.values() if m.task == task and m.role == "student"]
            wanted = self.settings.default_models.get(task)
            if wanted is not None:
                if wanted not in {m.name for m in students}:
                    raise ModelLoadError(f"default model {wanted!r} for task {task} is not a loaded {task} student "
                                         f"(loaded: {sorted(m.name for m in students) or 'none'})")
                self.defaults[task] = wanted
            elif students:  # streaming students first, then by name
                self.defaults[task] = sorted(students, key=lambda m: (not m.streaming, m.name))[0].name

    def start(self, executor: Executor, metrics: Metrics) -> None:
        """Start one micro-batcher per graph (needs the running event loop)."""
        s = self.settings
        for model in self.models.values():
            for graph, session in model.graphs.items():
                batcher = MicroBatcher(model.name, graph, session.run, executor, metrics, s.max_batch_size,
                                       s.max_batch_delay_ms / 1000.0, s.max_queue_rows)
                batcher.start()
                model.batchers[graph] = batcher

    async def close(self) -> None:
        for model in self.models.values():
            for batcher in model.batchers.values():
                await batcher.close()

    # -- lookup ------------------------------------------------------------------------------------------------------

    def student(self, task: str, name: str | None = None) -> LoadedModel:
        if task not in TASKS:
            raise NotFound(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
        if name is None:
            if task not in self.defaults:
                raise NotFound(f"no {task} model is loaded; put an exported {task} student under "
                               f"{self.settings.models_dir} and restart")
            return self.models[self.defaults[task]]
        model = self.models.get(name)
        if model is None or model.task != task or model.role != "student":
            names = sorted(m.name for m in self.models.values() if m.task == task and m.role == "student")
            raise NotFound(f"unknown {task} model {name!r}; loaded: {', '.join(names) or 'none'}")
        return model

    def teacher(self, task: str) -> LoadedModel:
        if task not in TASKS:
            raise NotFound(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
        for model in self.models.values():
            if model.task == task and model.role == "teacher":
                return model
        if self.settings.teacher == "off":
            raise NotFound("the teacher endpoint is disabled (teacher=off): start the service with --teacher auto "
                           f"(PKDOT_TEACHER=auto) and a {task} teacher folder under {self.settings.models_dir}")
        raise NotFound(f"no {task} teacher is loaded: export one (role 'teacher', task '{task}') into "
                       f"{self.settings.models_dir} and restart with --teacher auto or on (PKDOT_TEACHER)")
