"""Checkpoints: everything a run needs to continue exactly where it stopped.

A checkpoint holds the vectors (float32), the optimizer's state, the run's random generator
state, the losses so far and a fingerprint of what was trained (options that change the result,
the images, the text encoders' weights); ``--resume`` refuses a checkpoint of another run.
Written atomically; read back with PyTorch's ``weights_only`` loader (a checkpoint is a file
like any other: reading one never runs code).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pseudoword.registry.core.errors import InvalidRequest
from pseudoword.registry.core.files import atomic_write

FORMAT = 1
_NAME = re.compile(r"^step-(\d{6,})\.pt$")


@dataclass(frozen=True)
class Checkpoint:
    step: int
    vectors: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    generator: torch.Tensor
    steps: list[int]
    losses: list[float]
    scaler: dict[str, Any] | None
    fingerprint: str


def checkpoint_path(directory: Path, step: int) -> Path:
    return directory / f"step-{step:06d}.pt"


def existing(directory: Path) -> list[tuple[int, Path]]:
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def save(directory: Path, point: Checkpoint) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "step": point.step, "vectors": point.vectors, "optimizer": point.optimizer,
                "generator": point.generator, "steps": point.steps, "losses": point.losses,
                "scaler": point.scaler, "fingerprint": point.fingerprint}, buffer)
    path = checkpoint_path(directory, point.step)
    atomic_write(path, buffer.getvalue())
    return path


def latest(directory: Path, fingerprint: str) -> Checkpoint:
    """The newest checkpoint in ``directory``; InvalidRequest when there is none or it belongs to
    another run."""
    found = existing(directory)
    if not found:
        raise InvalidRequest(f"--resume: no checkpoint in {directory}; run without --resume to start",
                             {"path": str(directory)})
    step, path = found[-1]
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file: say which
        raise InvalidRequest(f"--resume: {path.name} is not a readable checkpoint ({type(exc).__name__})",
                             {"path": str(path)}) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InvalidRequest(f"--resume: {path.name} is not a pseudoword training checkpoint", {"path": str(path)})
    if data["fingerprint"] != fingerprint:
        raise InvalidRequest(f"--resume: {path} was written by a different run (other images, options or base "
                             "pipeline); resume with the same ones, or delete the folder to start over",
                             {"path": str(path)})
    return Checkpoint(int(data["step"]), data["vectors"], data["optimizer"], data["generator"], list(data["steps"]),
                      list(data["losses"]), data.get("scaler"), data["fingerprint"])
