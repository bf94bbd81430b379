"""Training on the small SD1 and SDXL pipelines: the loss falls, only the new vectors change,
and the file is read by diffusers, in AUTOMATIC1111's layout, and by ``pseudoword inspect``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from typer.testing import CliRunner

from pseudoword.cli.main import app
from pseudoword.registry.core import export_bytes, read_embedding
from pseudoword.runtime import encode
from pseudoword.runtime.training import TrainOptions, TrainResult, train
from tests.pipelines import copy_text_side, with_diffusers_ti
from tests.unit.training_support import image_folder, no_grads, pipeline_state, same_state


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _options(tmp: Path, **changes: Any) -> TrainOptions:
    values = dict(images=image_folder(tmp / "images"), trigger="zqtoy", out=tmp / "out" / "zqtoy.safetensors",
                  steps=12, lr=0.01, batch=2, seed=3, checkpoint_every=0, sample_every=0)
    values.update(changes)
    return TrainOptions(**values)


@pytest.fixture(scope="module")
def sd1_run(sd1: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainResult, dict[str, Any], dict[str, Any]]:
    before = pipeline_state(sd1)
    result = train(_options(tmp_path_factory.mktemp("sd1"), vectors=2), sd1)
    return result, before, pipeline_state(sd1)


@pytest.fixture(scope="module")
def sdxl_run(sdxl: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainResult, dict[str, Any], dict[str, Any]]:
    before = pipeline_state(sdxl)
    result = train(_options(tmp_path_factory.mktemp("sdxl"), steps=16, kind="style"), sdxl)
    return result, before, pipeline_state(sdxl)


@pytest.mark.parametrize("run", ["sd1_run", "sdxl_run"])
def test_loss_falls_and_only_the_new_vectors_change(run: str, request: pytest.FixtureRequest) -> None:
    result, before, after = request.getfixturevalue(run)
    pipe = request.getfixturevalue(run.removesuffix("_run"))
    assert result.held_loss_start is not None and result.held_loss_end is not None
    assert result.held_loss_end < result.held_loss_start  # the same fixed batch, before and after
    assert same_state(before, after) == []  # UNet, VAE, text encoders, tokenizers: bit-identical
    assert no_grads(pipe)
    word = "object" if run == "sd1_run" else "style"
    encoders = {"emb_params": pipe.text_encoder} if run == "sd1_run" else {"clip_l": pipe.text_encoder,
                                                                            "clip_g": pipe.text_encoder_2}
    for key, encoder in encoders.items():  # every encoder's vectors moved from the init word by their gradients,
        token = pipe.tokenizer(word, add_special_tokens=False).input_ids[0]
        init = encoder.get_input_embeddings().weight[token].detach()
        decay_alone = float(init.abs().max()) * (1 - (1 - 0.01 * 1e-2) ** len(result.steps))  # (not AdamW's decay)
        assert float((result.embedding.vectors[key] - init).abs().max()) > 10 * decay_alone


def test_sdxl_writes_one_file_with_both_encoders(sdxl_run: Any, sdxl: Any) -> None:
    result, _, _ = sdxl_run
    with safe_open(result.path, "pt") as handle:
        assert sorted(handle.keys()) == ["clip_g", "clip_l"]
        assert handle.get_tensor("clip_l").shape == (1, 768) and handle.get_tensor("clip_g").shape == (1, 1280)
        metadata = handle.metadata()
    style = sdxl.text_encoder_2.get_input_embeddings().weight[sdxl.tokenizer_2("style", add_special_tokens=False)
                                                               .input_ids[0]].detach()
    assert not torch.equal(result.embedding.vectors["clip_g"][0], style)  # clip_g trained too
    assert metadata["modelspec.architecture"] == "stable-diffusion-xl-v1-base/textual-inversion"
    assert metadata["pseudoword.kind"] == "style"
    # diffusers' SDXL way (one key per text encoder) gives what encode gives with our file
    emb = read_embedding(result.path)
    reference = with_diffusers_ti(sdxl, [(emb, "zqtoy")])
    theirs = reference.encode_prompt("a painting in the style of zqtoy", device="cpu", num_images_per_prompt=1,
                                     do_classifier_free_guidance=False)
    ours = encode(sdxl, "a painting in the style of zqtoy", None, [{"path": str(result.path), "trigger": "zqtoy"}])
    assert torch.allclose(ours["prompt_embeds"], theirs[0], atol=1e-5)


def test_output_loads_in_diffusers_a1111_and_inspect(sd1_run: Any, sd1: Any, tmp_path: Path) -> None:
    result, _, _ = sd1_run
    prompt = "a photo of zqtoy"
    ours = encode(sd1, prompt, "", [{"path": str(result.path), "trigger": "zqtoy"}])["prompt_embeds"]
    # the canonical file, loaded by diffusers' own load_textual_inversion
    loaded = copy_text_side(sd1)
    loaded.load_textual_inversion(str(result.path), token="zqtoy")
    theirs = loaded.encode_prompt(prompt, "cpu", 1, False)[0]
    assert torch.allclose(ours, theirs, atol=1e-5)
    # AUTOMATIC1111's layout: string_to_param['*'], name, step; diffusers reads it too
    a1111 = tmp_path / "zqtoy.pt"
    a1111.write_bytes(export_bytes(result.embedding, "a1111", "zqtoy"))
    data = torch.load(a1111, weights_only=True)
    assert torch.equal(data["string_to_param"]["*"], result.embedding.vectors["emb_params"])
    assert data["name"] == "zqtoy" and data["step"] == 12
    from_pt = copy_text_side(sd1)
    from_pt.load_textual_inversion(str(a1111), token="zqtoy")
    assert torch.allclose(from_pt.encode_prompt(prompt, "cpu", 1, False)[0], ours, atol=1e-5)
    # pseudoword inspect
    shown = CliRunner().invoke(app, ["inspect", str(result.path), "--json"])
    assert shown.exit_code == 0, shown.output
    summary = json.loads(shown.stdout)
    assert (summary["architecture"], summary["vectors"], summary["trigger"]) == ("sd1", 2, "zqtoy")
    meta = summary["metadata"]
    assert meta["modelspec.architecture"] == "stable-diffusion-v1/textual-inversion"
    assert meta["pseudoword.init_word"] == "object" and meta["pseudoword.steps"] == "12"
    assert meta["pseudoword.base_pipeline"] == "StableDiffusionPipeline"
    assert len(meta["pseudoword.text_encoder_sha256"]) == 64


def test_loss_curve_is_written_beside_the_output(sd1_run: Any) -> None:
    result, _, _ = sd1_run
    lines = result.loss_csv.read_text().splitlines()
    assert lines[0] == "step,loss" and len(lines) == 13
    assert [float(line.split(",")[1]) for line in lines[1:]] == result.losses
    from PIL import Image

    with Image.open(result.loss_png) as image:
        assert image.format == "PNG" and image.size == (800, 400)
        assert len(image.convert("RGB").getcolors(maxcolors=100_000) or []) > 2  # something was drawn


def test_sd2_trains_and_names_its_modelspec_architecture(sd2: Any, tmp_path: Path) -> None:
    result = train(_options(tmp_path, steps=2, batch=1), sd2)
    assert result.embedding.architecture == "sd2"
    assert result.embedding.vectors["emb_params"].shape == (1, 1024)
    assert result.embedding.metadata["modelspec.architecture"] == "stable-diffusion-v2-512/textual-inversion"


def test_prompts_follow_the_kind_and_the_captions() -> None:
    from pseudoword.runtime.training.templates import OBJECT_TEMPLATES, STYLE_TEMPLATES, prompt_for

    assert prompt_for("object", 0, "zqtoy", None) == OBJECT_TEMPLATES[0].format("zqtoy")
    assert prompt_for("style", len(STYLE_TEMPLATES) + 1, "zqtoy", None) == STYLE_TEMPLATES[1].format("zqtoy")
    assert prompt_for("object", 0, "zqtoy", "[name] on a red table") == "zqtoy on a red table"
    assert prompt_for("object", 0, "zqtoy", "a ZQTOY on grass") == "a ZQTOY on grass"
    first = OBJECT_TEMPLATES[0].format("zqtoy")
    assert prompt_for("object", 0, "zqtoy", "on grass, sunny") == f"{first}, on grass, sunny"


def test_the_vae_runs_once_per_view_not_per_step(sd1: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    encoded: list[int] = []
    original = sd1.vae.encode

    def counting(pixels: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        encoded.append(pixels.shape[0])
        return original(pixels, *args, **kwargs)

    monkeypatch.setattr(sd1.vae, "encode", counting)
    result = train(_options(tmp_path, steps=6, batch=2), sd1)
    assert len(result.steps) == 6
    assert sum(encoded) == 3 * 10  # 3 images x (square + 4 corner crops) x (as is + mirrored), once
