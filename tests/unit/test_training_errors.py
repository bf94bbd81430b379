"""Each bad input gives its clear error before anything is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pseudoword.registry.core.errors import InvalidRequest
from pseudoword.runtime.training import TrainOptions, train
from tests.unit.training_support import image_folder, no_grads


def _run(sd1: Any, tmp_path: Path, images: Path, **changes: Any) -> None:
    values = dict(images=images, trigger="zqtoy", out=tmp_path / "out" / "zqtoy.safetensors", steps=2,
                  checkpoint_every=1, sample_every=1, sample_steps=1)
    values.update(changes)
    train(TrainOptions(**values), sd1)


def _nothing_written(tmp_path: Path) -> None:
    assert not (tmp_path / "out").exists()


def test_empty_folder(sd1: Any, tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "notes.txt").write_text("not an image")
    with pytest.raises(InvalidRequest, match=r"holds no images \(.png, .jpg"):
        _run(sd1, tmp_path, folder)
    with pytest.raises(InvalidRequest, match="is not a folder of images"):
        _run(sd1, tmp_path, tmp_path / "missing")
    _nothing_written(tmp_path)


def test_unreadable_image(sd1: Any, tmp_path: Path) -> None:
    folder = image_folder(tmp_path / "images")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    with pytest.raises(InvalidRequest, match="broken.png is not a readable image"):
        _run(sd1, tmp_path, folder)
    _nothing_written(tmp_path)


def test_image_smaller_than_the_resolution(sd1: Any, tmp_path: Path) -> None:
    folder = image_folder(tmp_path / "images")
    image_folder(tmp_path / "small", count=1, size=(80, 48))
    (tmp_path / "small" / "image0.png").rename(folder / "tiny.png")
    with pytest.raises(InvalidRequest, match="tiny.png is 80x48, smaller than the training resolution 64"):
        _run(sd1, tmp_path, folder)
    with pytest.raises(InvalidRequest, match="image0.png is 72x64, smaller than the training resolution 128"):
        _run(sd1, tmp_path, image_folder(tmp_path / "fine"), resolution=128)
    _nothing_written(tmp_path)


@pytest.mark.parametrize("trigger", ["cat", "Painting"])
def test_trigger_already_a_vocabulary_word(sd1: Any, tmp_path: Path, trigger: str) -> None:
    with pytest.raises(InvalidRequest, match=f"trigger '{trigger}' is already a word of the tokenizer's vocabulary"):
        _run(sd1, tmp_path, image_folder(tmp_path / "images"), trigger=trigger)
    _nothing_written(tmp_path)


@pytest.mark.parametrize(("word", "tokens"), [("red car", "red</w> car</w>"),
                                              ("photorealistic", "photo realistic</w>")])
def test_init_word_of_several_tokens(sd1: Any, tmp_path: Path, word: str, tokens: str) -> None:
    with pytest.raises(InvalidRequest, match=f"init word '{word}' is 2 tokens \\({tokens}\\); it must be one token"):
        _run(sd1, tmp_path, image_folder(tmp_path / "images"), init_word=word)
    _nothing_written(tmp_path)


def test_options_refused_before_anything_loads(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="must be one prompt word"):
        TrainOptions(images=tmp_path, trigger="two words", out=tmp_path / "x.safetensors")
    with pytest.raises(InvalidRequest, match="must end in .safetensors"):
        TrainOptions(images=tmp_path, trigger="zqtoy", out=tmp_path / "x.pt")
    with pytest.raises(InvalidRequest, match="vectors must be a whole number from 1 to 75"):
        TrainOptions(images=tmp_path, trigger="zqtoy", out=tmp_path / "x.safetensors", vectors=76)


def test_a_caption_too_long_for_one_chunk(sd1: Any, tmp_path: Path) -> None:
    folder = image_folder(tmp_path / "images")
    (folder / "image1.txt").write_text("zqtoy " + "on a table " * 30)
    with pytest.raises(InvalidRequest, match="longer than 75 tokens; shorten its caption"):
        _run(sd1, tmp_path, folder)
    _nothing_written(tmp_path)
    assert no_grads(sd1)
