"""How `pseudoword import` names models and kinds from A1111 / ComfyUI file names, and what
`pull` names its files."""

from __future__ import annotations

import pytest

from pseudoword.cli.registry_cmd import usage_snippet
from pseudoword.registry.core import parse_ref
from pseudoword.registry.core.record import VersionRecord
from pseudoword.registry.core.writing import safe_filename
from pseudoword.registry.importing import embedding_files, is_negative_name, model_slug, trigger_from_stem


@pytest.mark.parametrize(
    ("stem", "slug"),
    [
        ("EasyNegative", "EasyNegative"),
        ("Low_Quality2xx_ By_Stable_Yogi-neg", "Low_Quality2xx_-By_Stable_Yogi-neg"),
        ("verybadimagenegative_v1.3", "verybadimagenegative_v1.3"),
        ("  two   spaces ", "two-spaces"),
        ("_leading", "leading"),
        ("ünïcode (v2)", "unicode-_v2_"),
        ("日本語", ""),
        ("x" * 200, "x" * 128),
        ("___", ""),
    ],
)
def test_model_slug_fits_the_id_grammar(stem, slug):
    assert model_slug(stem) == slug
    if slug:
        assert parse_ref(f"me:{slug}@1").model == slug


@pytest.mark.parametrize(
    ("stem", "trigger"),
    [
        ("EasyNegative", "EasyNegative"),
        ("Low_Quality2xx_ By_Stable_Yogi-neg", "Low_Quality2xx_-By_Stable_Yogi-neg"),
        ("a, b  c", "a-b-c"),
        ("ünïcode (v2)", "ünïcode-(v2)"),
    ],
)
def test_trigger_is_one_word_close_to_the_file_name(stem, trigger):
    assert trigger_from_stem(stem) == trigger
    assert not any(ch.isspace() or ch == "," for ch in trigger)


@pytest.mark.parametrize(
    ("stem", "negative"),
    [
        ("EasyNegative", True),
        ("CyberRealistic_Negative-neg", True),
        ("zPDXL-neg", True),
        ("bad_neg", True),
        ("verybadimagenegative_v1.3", True),
        ("Brav5Neg", False),
        ("negroni", False),
        ("charturnerv2", False),
    ],
)
def test_negative_from_name(stem, negative):
    assert is_negative_name(stem) is negative


def test_embedding_files_takes_known_suffixes_in_subfolders_and_skips_hidden(tmp_path):
    for name in ("a.pt", "B.SAFETENSORS", "sub/c.bin", ".hidden.pt", ".git/d.pt", "notes.txt", "e.ckpt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in embedding_files(tmp_path)] == ["a.pt", "B.SAFETENSORS", "sub/c.bin"]


def test_pulled_file_names_are_safe():
    assert safe_filename("bad-hands-5") == "bad-hands-5"
    assert safe_filename("Low_Quality2xx_ By_Stable_Yogi-neg") == "Low_Quality2xx_ By_Stable_Yogi-neg"
    assert safe_filename("<cat-toy>") == "_cat-toy_"
    assert safe_filename("../../etc/passwd") == "_.._etc_passwd"
    assert safe_filename("..") == "embedding"


def _record(model: str, kind: str, architecture: str) -> VersionRecord:
    return VersionRecord.from_wire({"id": f"me:{model}@1", "source": "me", "model": model, "version": "1",
                                    "trigger": model, "kind": kind, "architecture": architecture, "vectors": 1,
                                    "sha256": "0" * 64, "size": 10})


def test_usage_snippet_per_architecture_and_kind():
    sd1 = usage_snippet(_record("neg", "negative", "sd1"))
    assert sd1["embeddings"] == [{"model": "me:neg@1", "weight": -1.0}]
    assert 'load_textual_inversion("neg.diffusers.safetensors", token="neg")' in sd1["diffusers"]
    assert 'negative_prompt="neg"' in sd1["diffusers"]
    xl = usage_snippet(_record("xl", "positive", "sdxl"))
    assert xl["embeddings"] == [{"model": "me:xl@1", "weight": 1.0}]
    assert "text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2" in xl["diffusers"]
