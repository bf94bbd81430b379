"""Checkpoints and ``--resume``: a run interrupted at a checkpoint and resumed ends bit-identical
to one run straight through (CPU); samples come from ``generate`` on the way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from pseudoword.registry.core.errors import InvalidRequest
from pseudoword.runtime.training import StepReport, TrainOptions, train
from tests.unit.training_support import image_folder


class Interrupted(Exception):
    pass


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _options(images: Path, out: Path, **changes: Any) -> TrainOptions:
    values = dict(images=images, trigger="zqtoy", out=out, steps=6, lr=0.01, batch=2, seed=5, checkpoint_every=2,
                  sample_every=0)
    values.update(changes)
    return TrainOptions(**values)


def _stop_after(step: int) -> Any:
    def progress(report: StepReport) -> None:
        if report.step == step:
            raise Interrupted

    return progress


def test_interrupted_then_resumed_equals_straight_through(sd1: Any, tmp_path: Path) -> None:
    images = image_folder(tmp_path / "images")
    straight = train(_options(images, tmp_path / "a" / "zqtoy.safetensors"), sd1)
    interrupted = _options(images, tmp_path / "b" / "zqtoy.safetensors")
    with pytest.raises(Interrupted):
        train(interrupted, sd1, progress=_stop_after(5))  # checkpoints at 2 and 4, killed during 5
    assert sorted(p.name for p in interrupted.checkpoint_dir.iterdir()) == ["step-000002.pt", "step-000004.pt"]
    assert not interrupted.out.exists()  # an interrupted run leaves no output file
    resumed = train(_options(images, interrupted.out, resume=True), sd1)
    assert resumed.resumed_from == 4
    assert resumed.steps == straight.steps == [1, 2, 3, 4, 5, 6]
    assert resumed.losses == straight.losses
    for key, value in straight.embedding.vectors.items():
        assert torch.equal(resumed.embedding.vectors[key], value)
    assert interrupted.out.read_bytes() == straight.path.read_bytes()  # the whole file, metadata included


def test_resume_refuses_another_run_and_a_fresh_run_refuses_old_checkpoints(sd1: Any, tmp_path: Path) -> None:
    images = image_folder(tmp_path / "images")
    out = tmp_path / "o" / "zqtoy.safetensors"
    with pytest.raises(InvalidRequest, match="no checkpoint"):
        train(_options(images, out, resume=True), sd1)
    with pytest.raises(Interrupted):
        train(_options(images, out, steps=4), sd1, progress=_stop_after(3))
    with pytest.raises(InvalidRequest, match="different run"):
        train(_options(images, out, resume=True, lr=0.02), sd1)
    with pytest.raises(InvalidRequest, match="pass --resume"):
        train(_options(images, out, steps=4), sd1)
    assert not out.exists()


def test_samples_every_n_steps_through_generate(sd1: Any, tmp_path: Path) -> None:
    from PIL import Image

    result = train(_options(image_folder(tmp_path / "images"), tmp_path / "o" / "zqtoy.safetensors", steps=3,
                            checkpoint_every=0, sample_every=2, sample_steps=2), sd1)
    assert [p.name for p in result.samples] == ["zqtoy-000002.png", "zqtoy-000003.png"]  # every 2, and the last
    assert result.final_sample == result.samples[-1]
    with Image.open(result.samples[-1]) as image:
        assert image.size == (64, 64)
        assert "a photo of zqtoy" in image.text["parameters"]  # generate's A1111 infotext
        assert "zqtoy" in image.text["pseudoword"]
