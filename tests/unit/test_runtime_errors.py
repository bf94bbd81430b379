"""Bad requests to ``encode`` fail with a clear, typed error, before anything is resolved or
loaded, and leave the pipeline and the vector cache as they were."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import CLIPTextModel, T5Config, T5EncoderModel

from pseudoword.registry.core.errors import (
    ArchitectureMismatch,
    InvalidRequest,
    InvalidWeight,
    LocalNotFound,
    PseudowordError,
    RemoteNotFound,
    UnsupportedPipeline,
)
from pseudoword.runtime import encode, encode_request
from pseudoword.runtime.vector_cache import VectorCache
from tests.pipelines import FakeResolver, shared_sd2, text_config, text_state


@pytest.fixture()
def resolver(embeddings_dir: Path) -> FakeResolver:
    return (FakeResolver()
            .add("civitai:7808@9208", embeddings_dir / "EasyNegative.safetensors", trigger="easynegative")
            .add("civitai:403492@1", embeddings_dir / "zPDXL.pt", trigger="zpdxl")
            .add("civitai:9@9", embeddings_dir / "nfixer.pt", trigger="nfixer"))


def _unchanged(pipe: Any, call: Any, error: type[PseudowordError], match: str) -> PseudowordError:
    """Run ``call`` expecting ``error``; check the pipeline and a fresh cache are untouched."""
    before = text_state(pipe)
    cache = VectorCache()
    with pytest.raises(error, match=match) as info:
        call(cache)
    after = text_state(pipe)
    assert all(torch.equal(before[k], after[k]) if isinstance(before[k], torch.Tensor) else before[k] == after[k]
               for k in before)
    assert len(cache) == 0
    return info.value


@pytest.mark.parametrize("weight", [0, 4.5, -4.01, float("nan"), float("inf"), True, "1", None])
def test_out_of_range_zero_and_non_numeric_weights(sd1: Any, resolver: FakeResolver, weight: Any) -> None:
    err = _unchanged(sd1, lambda cache: encode_request(
        sd1, "a cat", "", [{"model": "civitai:7808@9208", "weight": weight}], resolver=resolver, vector_cache=cache),
        InvalidWeight, "civitai:7808@9208")
    assert err.code == "invalid_weight"
    assert "-4 to 4" in err.message
    assert resolver.calls == []  # refused before any resolution


@pytest.mark.parametrize("weight", [4, -4, 0.01, -0.5])
def test_boundary_weights_are_accepted(sd1: Any, resolver: FakeResolver, weight: float) -> None:
    result = encode_request(sd1, "a cat", "", [{"model": "civitai:7808@9208", "weight": weight}], resolver=resolver)
    assert result.applied[0].weight == weight


def test_unknown_reference(sd1: Any, resolver: FakeResolver) -> None:
    err = _unchanged(sd1, lambda cache: encode_request(
        sd1, "a cat", "", [{"model": "civitai:7808@9208"}, {"model": "civitai:404@404", "weight": 1}],
        resolver=resolver, vector_cache=cache), RemoteNotFound, "civitai:404@404")
    assert err.code == "not_found"
    assert resolver.calls == [["civitai:7808@9208", "civitai:404@404"]]  # one batched call


def test_sd1_embedding_on_sdxl_names_both_sides(sdxl: Any, resolver: FakeResolver) -> None:
    err = _unchanged(sdxl, lambda cache: encode_request(
        sdxl, "a cat", "", [{"model": "civitai:7808@9208", "weight": 1}], resolver=resolver, vector_cache=cache),
        ArchitectureMismatch, "StableDiffusionXLPipeline")
    assert err.message == ("embedding civitai:7808@9208 is sd1 (768) but the pipeline StableDiffusionXLPipeline "
                           "expects sdxl (clip_l 768 + clip_g 1280)")
    assert resolver.reads == []  # refused from the record, no file read


def test_sdxl_and_sd2_embeddings_on_sd1(sd1: Any, resolver: FakeResolver, embeddings_dir: Path) -> None:
    _unchanged(sd1, lambda cache: encode_request(sd1, "a", "", [{"model": "civitai:403492@1"}], resolver=resolver,
                                                 vector_cache=cache),
               ArchitectureMismatch, r"is sdxl \(clip_l 768 \+ clip_g 1280\) but .* expects sd1 \(768\)")
    _unchanged(sd1, lambda cache: encode_request(sd1, "a", "", [{"path": str(embeddings_dir / "nfixer.pt")}],
                                                 vector_cache=cache),
               ArchitectureMismatch, r"nfixer.pt is sd2 \(1024\) but the pipeline StableDiffusionPipeline")


def test_sd1_embedding_on_sd2(tokenizer_2_dir: Path, embeddings_dir: Path) -> None:
    sd2 = shared_sd2(tokenizer_2_dir)
    with pytest.raises(ArchitectureMismatch, match=r"is sd1 \(768\) but .* expects sd2 \(1024\)"):
        encode(sd2, "a", "", [{"path": str(embeddings_dir / "EasyNegative.safetensors")}])


class FluxPipeline:
    """Stands in for diffusers' FluxPipeline: CLIP-L plus a T5 encoder."""

    def __init__(self, sd1: Any) -> None:
        self.text_encoder = sd1.text_encoder
        self.tokenizer = sd1.tokenizer
        self.text_encoder_2 = T5EncoderModel(T5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=16, num_layers=1,
                                                      num_heads=2))
        self.tokenizer_2 = sd1.tokenizer


class StableDiffusion3Pipeline:
    def __init__(self, sd1: Any) -> None:
        self.text_encoder = sd1.text_encoder
        self.text_encoder_2 = sd1.text_encoder
        self.text_encoder_3 = object()


def test_non_clip_pipelines_are_refused_by_name(sd1: Any, resolver: FakeResolver) -> None:
    err = _unchanged(sd1, lambda cache: encode_request(
        FluxPipeline(sd1), "a cat", "", [{"model": "civitai:7808@9208"}], resolver=resolver, vector_cache=cache),
        UnsupportedPipeline, "FluxPipeline")
    assert "CLIPTextModel + T5EncoderModel" in err.message and "SD 1.x, SD 2.x and SDXL" in err.message
    with pytest.raises(UnsupportedPipeline, match="StableDiffusion3Pipeline .* third"):
        encode(StableDiffusion3Pipeline(sd1), "a cat")
    odd = type("OddPipeline", (), {"text_encoder": CLIPTextModel(text_config("clip_l", 1).__class__(
        hidden_size=64, intermediate_size=64, num_attention_heads=2, num_hidden_layers=1)),
        "tokenizer": sd1.tokenizer})()
    with pytest.raises(UnsupportedPipeline, match="64 wide"):
        encode(odd, "a cat")
    assert resolver.calls == []


@pytest.mark.parametrize(
    ("embeddings", "match"),
    [
        ("civitai:1@2", "must be a list"),
        ([["civitai:1@2"]], r"embeddings\[0\] must be an object"),
        ([{"weight": 1}], "exactly one of model"),
        ([{"model": "civitai:1@2", "path": "x.pt"}], "exactly one of model"),
        ([{"model": "civitai:1@2", "strength": 1}], "unknown keys"),
        ([{"model": ""}], "non-empty string"),
        ([{"path": "x.pt", "trigger": " "}], "trigger must be"),
        ([{"model": f"civitai:{i}@1"} for i in range(33)], "at most 32"),
    ],
)
def test_malformed_entries(sd1: Any, resolver: FakeResolver, embeddings: Any, match: str) -> None:
    _unchanged(sd1, lambda cache: encode_request(sd1, "a cat", "", embeddings, resolver=resolver,
                                                 vector_cache=cache), InvalidRequest, match)
    assert resolver.calls == []


def test_missing_local_file(sd1: Any, tmp_path: Path) -> None:
    _unchanged(sd1, lambda cache: encode_request(sd1, "a", "", [{"path": str(tmp_path / "nope.pt")}],
                                                 vector_cache=cache), LocalNotFound, "nope.pt not found")


def test_two_embeddings_with_one_trigger(sd1: Any, resolver: FakeResolver, embeddings_dir: Path) -> None:
    _unchanged(sd1, lambda cache: encode_request(
        sd1, "a", "", [{"model": "civitai:7808@9208"},
                       {"path": str(embeddings_dir / "bad-artist.pt"), "trigger": "EasyNegative"}],
        resolver=resolver, vector_cache=cache), InvalidRequest, "share the trigger")


def test_bad_prompts_and_clip_skip(sd1: Any, sdxl: Any) -> None:
    with pytest.raises(InvalidRequest, match="prompt must be a string"):
        encode(sd1, None)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="negative_prompt must be a string"):
        encode(sd1, "a", 3)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="at most 20000"):
        encode(sd1, "a" * 20_001)
    with pytest.raises(InvalidRequest, match=r"at most 16 chunks of 75 tokens \(1200\) are encoded"):
        encode(sd1, "cat " * 1300)
    with pytest.raises(InvalidRequest, match=r"clip_skip 5 is out of range for a 2-layer text encoder \(0 to 2\)"):
        encode(sd1, "a", clip_skip=5)
    with pytest.raises(InvalidRequest, match=r"\(0 to 1\)"):
        encode(sdxl, "a", clip_skip=2)
    with pytest.raises(InvalidRequest, match="clip_skip must be an integer"):
        encode(sd1, "a", clip_skip=1.5)  # type: ignore[arg-type]
