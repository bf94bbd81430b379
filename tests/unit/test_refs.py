"""The reference grammar: every accepted form, clear errors, and property-based round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pseudoword.registry.core import HashRef, ModelRef, parse_model_ref, parse_ref
from pseudoword.registry.core.errors import InvalidReference

pytestmark = pytest.mark.smoke  # run against the built wheel too (tests/unit/test_packaging.py)

SOURCES = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,63}", fullmatch=True).filter(
    lambda s: s not in {"sha256", "autov2", "a1111", "urn"}
)
NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", fullmatch=True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("civitai:7808@9208", ModelRef("civitai", "7808", "9208")),
        ("civitai:7808", ModelRef("civitai", "7808", None)),
        ("hf:EasyNegative@v1.0", ModelRef("hf", "EasyNegative", "v1.0")),
        ("  my_studio:bad-hands_5@2  ", ModelRef("my_studio", "bad-hands_5", "2")),
        ("urn:air:sd1:embedding:civitai:7808@9208", ModelRef("civitai", "7808", "9208", "sd1")),
        ("urn:air:sdxl:embedding:civitai:7808", ModelRef("civitai", "7808", None, "sdxl")),
    ],
)
def test_model_refs_parse(text: str, expected: ModelRef) -> None:
    assert parse_ref(text) == expected


def test_air_is_printed_with_the_architecture() -> None:
    ref = parse_ref("civitai:7808@9208")
    assert isinstance(ref, ModelRef)
    assert ref.air("sd1") == "urn:air:sd1:embedding:civitai:7808@9208"
    assert str(parse_ref(ref.air("sdxl"))) == "civitai:7808@9208"


@pytest.mark.parametrize(
    ("text", "algo", "value"),
    [
        ("sha256:" + "AB" * 32, "sha256", "ab" * 32),
        ("ab" * 32, "sha256", "ab" * 32),
        ("c74b4e810b", "autov2", "c74b4e810b"),
        ("autov2:C74B4E810B", "autov2", "c74b4e810b"),
        ("c74b4e810b03", "a1111", "c74b4e810b03"),
        ("a1111:c74b4e810b03", "a1111", "c74b4e810b03"),
        ("sha256:c74b4e810b", "autov2", "c74b4e810b"),
    ],
)
def test_hash_refs_parse(text: str, algo: str, value: str) -> None:
    assert parse_ref(text) == HashRef(algo, value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty reference"),
        ("civitai", "expected SOURCE:MODEL"),
        ("Civitai:7808", "expected SOURCE:MODEL"),  # source is lowercase only
        ("civitai:78 08", "expected SOURCE:MODEL"),
        ("civitai:-7808", "expected SOURCE:MODEL"),
        ("civitai:7808@", "expected SOURCE:MODEL"),
        ("civitai:7808@1@2", "expected SOURCE:MODEL"),
        ("civitai:" + "a" * 129, "expected SOURCE:MODEL"),
        ("sha256:1234", "64 hex digits"),
        ("sha256:" + "g" * 64, "64 hex digits"),
        ("autov2:c74b4e810b03", "autov2 takes 10"),
        ("urn:air:flux1:embedding:civitai:1@2", "ecosystem 'flux1'"),
        ("urn:air:sd1:lora:civitai:1@2", "type 'lora'"),
        ("urn:air:sd1", "invalid AIR"),
        ("urn:civitai:1", "invalid AIR"),
        ("x" * 600, "at most 512"),
    ],
)
def test_bad_refs_are_refused_with_a_clear_message(text: str, fragment: str) -> None:
    with pytest.raises(InvalidReference) as info:
        parse_ref(text)
    assert fragment in info.value.message
    assert info.value.code == "invalid_reference"


def test_model_ref_required_where_a_model_is_named() -> None:
    with pytest.raises(InvalidReference, match="hash reference"):
        parse_model_ref("c74b4e810b")
    with pytest.raises(InvalidReference, match="needs a version"):
        parse_model_ref("civitai:7808", require_version=True)
    assert parse_model_ref("civitai:7808@1", require_version=True).version == "1"


@settings(max_examples=300, deadline=None)
@given(SOURCES, NAMES, st.none() | NAMES)
def test_format_parse_round_trips(source: str, model: str, version: str | None) -> None:
    text = f"{source}:{model}" + (f"@{version}" if version else "")
    ref = parse_ref(text)
    assert str(ref) == text
    if version:
        assert isinstance(ref, ModelRef)
        air = ref.air("sd2")
        assert parse_ref(air) == ModelRef(source, model, version, "sd2")
        assert parse_ref(air).air() == air  # type: ignore[union-attr]


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200))
def test_random_strings_never_crash_the_parser(text: str) -> None:
    try:
        ref = parse_ref(text)
    except InvalidReference as exc:
        assert exc.message
    else:
        assert str(parse_ref(str(ref))) == str(ref)
