"""Every real file in the corpus is recognised as MANIFEST.tsv says, and converts losslessly."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load as load_safetensors

from pseudoword.registry.core import (
    Triggers,
    canonical_bytes,
    default_trigger,
    export_bytes,
    file_hashes,
    read_embedding,
    triggers_for,
)
from pseudoword.registry.core.errors import ShapeMismatch


def _accepted(manifest: list[dict[str, str]]) -> list[dict[str, str]]:
    return [row for row in manifest if row["architecture"] != "reject"]


def test_manifest_is_complete(manifest: list[dict[str, str]], embeddings_dir: Path) -> None:
    files = {p.name for p in embeddings_dir.iterdir() if p.suffix in (".pt", ".bin", ".safetensors")}
    assert files == {row["file"] for row in manifest}
    assert len(manifest) == 29


def test_every_file_is_recognised(manifest: list[dict[str, str]], embeddings_dir: Path) -> None:
    for row in manifest:
        data = (embeddings_dir / row["file"]).read_bytes()
        assert len(data) == int(row["size"])
        assert file_hashes(data).sha256 == row["sha256"], row["file"]
        if row["architecture"] == "reject":
            with pytest.raises(ShapeMismatch, match="not a single embedding"):
                read_embedding(data, filename=row["file"])
            continue
        emb = read_embedding(data, filename=row["file"])
        assert (emb.architecture, emb.num_vectors) == (row["architecture"], int(row["vectors"])), row["file"]
        expected_keys = {"clip_l", "clip_g"} if emb.architecture == "sdxl" else {"emb_params"}
        assert set(emb.vectors) == expected_keys


def test_a1111_training_metadata_is_kept(embeddings_dir: Path) -> None:
    emb = read_embedding(embeddings_dir / "bad-hands-5.pt")
    assert emb.name == "bad-hands-5"
    assert emb.metadata == {"step": "1419", "sd_checkpoint": "5d2f8777af", "sd_checkpoint_name": "7th7-any3"}
    assert emb.source_format == "a1111"


def test_triggers(embeddings_dir: Path) -> None:
    """The file's name is the trigger (as A1111 and ComfyUI call it); the name stored inside
    (A1111's name, diffusers' token) is an alias."""
    cases = {
        "bad-hands-5.pt": ("bad-hands-5", ()),  # A1111 name = the file's name
        "charturnerv2.pt": ("charturnerv2", ("testTurner",)),  # A1111 name unlike the file's
        "koalbert_learned_embeds.safetensors": ("koalbert_learned_embeds", ("<cat-toy>",)),  # diffusers token
        "fastai_learned_embeds.bin": ("fastai_learned_embeds", ("<birb-style>",)),
        "EasyNegative.safetensors": ("EasyNegative", ()),  # no name inside
        "Low_Quality2xx_ By_Stable_Yogi-neg.pt": ("Low_Quality2xx_-By_Stable_Yogi-neg",
                                                  ("Low_Quality2xx_ By_Stable_Yogi-neg", "_EmbeddingMerge_temp")),
    }
    for name, (trigger, aliases) in cases.items():
        emb = read_embedding(embeddings_dir / name)
        assert triggers_for(emb, name) == Triggers(trigger, aliases)
        assert default_trigger(emb, name) == trigger


def test_canonical_round_trip(manifest: list[dict[str, str]], embeddings_dir: Path) -> None:
    for row in _accepted(manifest):
        emb = read_embedding(embeddings_dir / row["file"])
        canonical = canonical_bytes(emb)
        again = read_embedding(canonical)
        assert again.architecture == emb.architecture and again.name == emb.name
        assert again.metadata == emb.metadata
        for key, tensor in emb.vectors.items():
            assert torch.equal(again.vectors[key], tensor), row["file"]
        assert canonical_bytes(again) == canonical  # stable: the stored bytes never drift
        stored = load_safetensors(canonical)
        assert set(stored) == ({"clip_l", "clip_g"} if emb.architecture == "sdxl" else {"emb_params"})


def test_canonical_bytes_are_identical_across_processes(embeddings_dir: Path, tmp_path: Path) -> None:
    """safetensors writes metadata in hash-map order; ours must not depend on the process."""
    import subprocess
    import sys

    script = (
        "import sys, hashlib; from pseudoword.registry.core import read_embedding, canonical_bytes;"
        "print(hashlib.sha256(canonical_bytes(read_embedding(sys.argv[1]))).hexdigest())"
    )
    path = str(embeddings_dir / "bad-hands-5.pt")
    digests = {subprocess.run([sys.executable, "-c", script, path], capture_output=True, text=True, check=True).stdout
               for _ in range(3)}
    assert len(digests) == 1


def test_a1111_export_loads_in_a1111_layout(manifest: list[dict[str, str]], embeddings_dir: Path) -> None:
    for row in _accepted(manifest):
        emb = read_embedding(embeddings_dir / row["file"])
        data = export_bytes(emb, "a1111", "trig")
        loaded: Any = torch.load(io.BytesIO(data), weights_only=True)
        if emb.architecture == "sdxl":
            assert torch.equal(loaded["clip_l"], emb.vectors["clip_l"])
            assert torch.equal(loaded["clip_g"], emb.vectors["clip_g"])
        else:
            assert loaded["name"] == "trig" and loaded["string_to_token"] == {"*": 265}
            assert torch.equal(loaded["string_to_param"]["*"], emb.vectors["emb_params"])
        assert read_embedding(data).num_vectors == emb.num_vectors


def test_diffusers_export_loads_with_load_textual_inversion(embeddings_dir: Path, tokenizer_dir: Path,
                                                            tmp_path: Path) -> None:
    from diffusers.loaders import TextualInversionLoaderMixin
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
    encoder = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=64, num_hidden_layers=1,
                                           num_attention_heads=2, projection_dim=768))

    class TinyPipeline(TextualInversionLoaderMixin):
        """The two components load_textual_inversion works on, as a pipeline holds them."""

        hf_device_map = None
        components: dict[str, Any] = {}

        def __init__(self) -> None:
            self.tokenizer, self.text_encoder = tokenizer, encoder

    pipe = TinyPipeline()
    for name in ("bad-picture-chill-75v.pt", "EasyNegative.safetensors", "fastai_learned_embeds.bin"):
        emb = read_embedding(embeddings_dir / name)
        trigger = f"<{Path(name).stem}>"
        path = tmp_path / f"{Path(name).stem}.safetensors"
        path.write_bytes(export_bytes(emb, "diffusers", trigger))
        pipe.load_textual_inversion(str(path))
        tokens = [trigger] + [f"{trigger}_{i}" for i in range(1, emb.num_vectors)]
        ids = tokenizer.convert_tokens_to_ids(tokens)
        assert torch.equal(encoder.get_input_embeddings().weight[ids], emb.vectors["emb_params"]), name


def test_sdxl_diffusers_export_has_one_key_per_encoder(embeddings_dir: Path) -> None:
    emb = read_embedding(embeddings_dir / "zPDXL2.safetensors")
    tensors = load_safetensors(export_bytes(emb, "diffusers", "zPDXL2"))
    assert set(tensors) == {"clip_l", "clip_g"} and tensors["clip_g"].shape == (42, 1280)
