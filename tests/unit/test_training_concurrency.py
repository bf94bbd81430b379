"""Two trainings at once on one loaded pipeline while ``encode`` serves from another thread: every
result equals the one it gives alone (the pipeline is only read, each run has its own generator
and optimizer)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from pseudoword.runtime import encode
from pseudoword.runtime.training import TrainOptions, train
from tests.unit.training_support import image_folder, no_grads, pipeline_state, same_state

REQUESTS = [("a portrait, (soft light:1.2)", "blurry"), ("a lighthouse at dusk", ""), ("zq photo of a dog", "lowres")]


def test_two_trainings_and_encode_at_once_equal_each_alone(sd1: Any, tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        before = pipeline_state(sd1)
        one = TrainOptions(images=image_folder(tmp_path / "a", count=3), trigger="zqtoy",
                           out=tmp_path / "a.safetensors", steps=4, lr=0.01, batch=2, seed=1, checkpoint_every=0,
                           sample_every=0)
        two = TrainOptions(images=image_folder(tmp_path / "b", count=2), trigger="qzstyle", kind="style", vectors=2,
                           out=tmp_path / "b.safetensors", steps=4, lr=0.02, batch=1, seed=2, checkpoint_every=0,
                           sample_every=0)
        alone = [train(one, sd1), train(two, sd1)]
        served_alone = [encode(sd1, p, n)["prompt_embeds"] for p, n in REQUESTS]

        stop = threading.Event()
        served: list[tuple[int, torch.Tensor]] = []

        def serve() -> None:
            while not stop.is_set() or len(served) < len(REQUESTS):
                index = len(served) % len(REQUESTS)
                served.append((index, encode(sd1, *REQUESTS[index])["prompt_embeds"]))

        with ThreadPoolExecutor(3) as pool:
            server = pool.submit(serve)
            runs = [pool.submit(train, options, sd1) for options in (
                TrainOptions(**{**one.to_dict(), "out": tmp_path / "a2.safetensors"}),
                TrainOptions(**{**two.to_dict(), "out": tmp_path / "b2.safetensors"}))]
            together = [run.result() for run in runs]
            stop.set()
            server.result()
        for solo, concurrent in zip(alone, together, strict=True):
            assert concurrent.losses == solo.losses
            for key, value in solo.embedding.vectors.items():
                assert torch.equal(concurrent.embedding.vectors[key], value)
        assert len(served) >= len(REQUESTS)
        for index, embeds in served:
            assert torch.equal(embeds, served_alone[index])
        assert same_state(before, pipeline_state(sd1)) == [] and no_grads(sd1)
    finally:
        torch.set_num_threads(threads)
