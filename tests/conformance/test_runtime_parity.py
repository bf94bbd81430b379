"""Parity with diffusers: with W = 1 and the trigger in the prompt, ``encode`` gives what
``load_textual_inversion`` + ``encode_prompt`` give, for real corpus embeddings on SD 1.x, SD 2.x
and SDXL pipelines of real width. The reference runs on a copy of the text side, so the shared
pipeline stays pristine (checked at the end)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from pseudoword.registry.core import read_embedding
from pseudoword.runtime import encode
from tests.pipelines import text_state, with_diffusers_ti

TOLERANCE = 1e-5

# (file, trigger used in both systems); triggers chosen so no trigger is a substring of
# another: diffusers' maybe_convert_prompt rewrites prompts with str.replace.
SD1_FILES = [
    ("EasyNegative.safetensors", "easynegative"),  # kohya safetensors, 8 vectors
    ("bad-hands-5.pt", "bad-hands-5"),  # A1111 pickle, 2 vectors, trigger from the file
    ("koalbert_learned_embeds.safetensors", "<cat-toy>"),  # diffusers safetensors, 1 vector
    ("fastai_learned_embeds.bin", "<birb-style>"),  # diffusers pickle [768]
    ("charturnerv2.pt", "charturner"),  # 15 vectors
]
SD2_FILES = [("nfixer.pt", "nfixer"), ("21charturnerv2.pt", "turner21")]
SDXL_FILES = [("zPDXL.pt", "zpdxl"), ("zPDXL2.safetensors", "pdxltwo"), ("zPDXL-neg.pt", "pdxlneg")]

SD1_CASES = [
    ("a photo of easynegative, highly detailed", "blurry"),
    ("bad-hands-5 a portrait, <cat-toy> on a table", "easynegative, bad-hands-5"),
    ("<birb-style> painting of a bird", ""),
    ("charturner, a character turnaround, multiple views", "lowres, easynegative"),
]
SD2_CASES = [("a landscape, nfixer", "turner21, blurry"), ("turner21 character sheet", "")]
SDXL_CASES = [("score_9, zpdxl, a cat", "pdxlneg, ugly"), ("pdxltwo landscape at dusk", "")]


def _reference(pipe: Any, embeddings_dir: Path, files: list[tuple[str, str]]) -> Any:
    """A copy of ``pipe`` with the files loaded by diffusers' own textual-inversion loader."""
    return with_diffusers_ti(pipe, [(read_embedding(embeddings_dir / name), trigger) for name, trigger in files])


def _entries(embeddings_dir: Path, files: list[tuple[str, str]], prompt: str, negative: str) -> list[dict]:
    """Entries for the files whose trigger the request uses, weight 1 (placed where written)."""
    text = f"{prompt} {negative}"
    return [{"path": str(embeddings_dir / name), "trigger": trigger, "weight": 1}
            for name, trigger in files if trigger in text]


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


@pytest.mark.parametrize("arch", ["sd1", "sd2"])
def test_sd1_and_sd2_match_load_textual_inversion(arch: str, request: pytest.FixtureRequest,
                                                  embeddings_dir: Path) -> None:
    pipe = request.getfixturevalue(arch)
    files, cases = (SD1_FILES, SD1_CASES) if arch == "sd1" else (SD2_FILES, SD2_CASES)
    before = text_state(pipe)
    ref = _reference(pipe, embeddings_dir, files)
    for prompt, negative in cases:
        entries = _entries(embeddings_dir, files, prompt, negative)
        assert entries, "every case uses an embedding"
        ours = encode(pipe, prompt, negative, entries)
        theirs = ref.encode_prompt(prompt, device="cpu", num_images_per_prompt=1,
                                   do_classifier_free_guidance=True, negative_prompt=negative)
        assert _diff(ours["prompt_embeds"], theirs[0]) <= TOLERANCE, (arch, prompt)
        assert _diff(ours["negative_prompt_embeds"], theirs[1]) <= TOLERANCE, (arch, negative)
        # and the embedding made a difference (the comparison is not vacuous)
        plain = pipe.encode_prompt(prompt, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False)
        assert _diff(ours["prompt_embeds"], plain[0]) > 1e-3
    after = text_state(pipe)
    assert after.keys() == before.keys()
    assert all(torch.equal(before[k], after[k]) if isinstance(before[k], torch.Tensor) else before[k] == after[k]
               for k in before)


@pytest.fixture(scope="module")
def sdxl_reference(sdxl: Any, embeddings_dir: Path) -> Any:
    return _reference(sdxl, embeddings_dir, SDXL_FILES)


@pytest.mark.parametrize("clip_skip", [None, 1])
def test_sdxl_matches_load_textual_inversion(sdxl: Any, sdxl_reference: Any, embeddings_dir: Path,
                                            clip_skip: int | None) -> None:
    ref = sdxl_reference
    keys = ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds")
    for prompt, negative in SDXL_CASES:
        entries = _entries(embeddings_dir, SDXL_FILES, prompt, negative)
        ours = encode(sdxl, prompt, negative, entries, clip_skip=clip_skip)
        theirs = dict(zip(keys, ref.encode_prompt(prompt, device="cpu", num_images_per_prompt=1,
                                                  do_classifier_free_guidance=True, negative_prompt=negative,
                                                  clip_skip=clip_skip)))
        assert _diff(ours["prompt_embeds"], theirs["prompt_embeds"]) <= TOLERANCE
        assert _diff(ours["pooled_prompt_embeds"], theirs["pooled_prompt_embeds"]) <= TOLERANCE
        assert _diff(ours["negative_pooled_prompt_embeds"], theirs["negative_pooled_prompt_embeds"]) <= TOLERANCE
        if clip_skip is None:
            assert _diff(ours["negative_prompt_embeds"], theirs["negative_prompt_embeds"]) <= TOLERANCE
        else:
            # diffusers applies clip_skip to the prompt only; we apply it to both sides, as
            # A1111 does: our negative equals diffusers' encoding of that text as a prompt.
            as_prompt = ref.encode_prompt(negative, device="cpu", num_images_per_prompt=1,
                                          do_classifier_free_guidance=False, clip_skip=clip_skip)
            assert _diff(ours["negative_prompt_embeds"], as_prompt[0]) <= TOLERANCE


def test_sdxl_without_negative_prompt_gives_zeros_like_diffusers(sdxl: Any, embeddings_dir: Path) -> None:
    """``negative_prompt=None`` on an SDXL pipeline with force_zeros_for_empty_prompt: zeros,
    as ``pipe(prompt)`` would use; a negative embedding still lands there."""
    ours = encode(sdxl, "a cat", None)
    theirs = sdxl.encode_prompt("a cat", device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=True)
    assert _diff(ours["prompt_embeds"], theirs[0]) <= TOLERANCE
    assert torch.count_nonzero(ours["negative_prompt_embeds"]) == 0
    assert torch.count_nonzero(ours["negative_pooled_prompt_embeds"]) == 0
    with_neg = encode(sdxl, "a cat", None, [{"path": str(embeddings_dir / "zPDXL-neg.pt"), "weight": -1}])
    assert torch.count_nonzero(with_neg["negative_prompt_embeds"]) > 0
