"""Hostile and broken files: each is refused with its own error code, and nothing runs."""

from __future__ import annotations

import builtins
import io
import json
import os
import pickle
import struct
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save as save_safetensors

from pseudoword.registry.core import Limits, read_embedding
from pseudoword.registry.core.errors import (
    InvalidFile,
    NonFiniteValues,
    PseudowordError,
    ShapeMismatch,
    TooLarge,
    UnsafePickle,
)


class Payload:
    """Pickles to a call of ``func(*args)``: what a hostile embedding file carries."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.func, self.args


def payloads(canary: Path) -> dict[str, Payload]:
    touch = f"open({str(canary)!r}, 'w').write('ran')"
    return {
        "os.system": Payload(os.system, f"touch {canary}"),
        "exec": Payload(builtins.exec, touch),
        "builtins.eval": Payload(builtins.eval, touch),
        "subprocess": Payload(subprocess.call, ["touch", str(canary)]),
    }


def torch_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def expect(code_cls: type[PseudowordError], data: bytes, match: str, limits: Limits | None = None) -> PseudowordError:
    with pytest.raises(code_cls) as info:
        read_embedding(data, limits=limits or Limits())
    assert type(info.value) is code_cls, f"expected {code_cls.__name__}, got {type(info.value).__name__}"
    assert match in info.value.message, info.value.message
    return info.value


@pytest.mark.parametrize("kind", ["os.system", "exec", "builtins.eval", "subprocess"])
def test_code_in_a_raw_pickle_never_runs(tmp_path: Path, kind: str) -> None:
    canary = tmp_path / "canary"
    data = pickle.dumps({"emb_params": payloads(canary)[kind]}, protocol=2)
    error = expect(UnsafePickle, data, "refused pickle")
    assert error.code == "unsafe_pickle"
    assert not canary.exists()


@pytest.mark.parametrize("kind", ["os.system", "exec", "builtins.eval", "subprocess"])
def test_code_inside_a_torch_zip_never_runs(tmp_path: Path, kind: str) -> None:
    canary = tmp_path / "canary"
    data = torch_bytes({"string_to_param": {"*": payloads(canary)[kind]}, "name": "evil"})
    assert data.startswith(b"PK")
    error = expect(UnsafePickle, data, "refused pickle")
    assert "restricted loader" in error.message or "not allowed" in error.message
    assert not canary.exists()


def test_decompression_bomb_is_refused_before_loading() -> None:
    good = torch_bytes({"emb_params": torch.zeros(2, 768)})
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for member in src.infolist():
            dst.writestr(member.filename, src.read(member.filename))
        dst.writestr("archive/data/99", b"\0" * (64 * 1024 * 1024))
    data = out.getvalue()
    assert len(data) < 1024 * 1024  # small on disk, 64 MiB inside
    error = expect(TooLarge, data, "expands to")
    assert error.code == "too_large"


def test_file_over_the_size_limit_is_refused() -> None:
    data = save_safetensors({"emb_params": torch.zeros(4, 768)})
    expect(TooLarge, data, "at most 1000 allowed", Limits(max_file_bytes=1000))


def test_too_many_tensors_is_refused() -> None:
    data = save_safetensors({f"t{i}": torch.zeros(1, 768) for i in range(20)})
    expect(TooLarge, data, "20 tensors")


def _safetensors_with_header(header: dict[str, Any], body: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + body


def test_header_that_claims_more_bytes_than_the_file_holds() -> None:
    data = save_safetensors({"emb_params": torch.zeros(2, 768)})
    lying = struct.pack("<Q", len(data) * 4) + data[8:]
    expect(InvalidFile, lying, "header claims")


def test_header_that_is_not_json() -> None:
    text = b"{this is not json}"
    expect(InvalidFile, struct.pack("<Q", len(text)) + text + b"\0" * 16, "not valid JSON")


def test_tensor_offsets_past_the_end() -> None:
    header = {"emb_params": {"dtype": "F32", "shape": [2, 768], "data_offsets": [0, 6144]}}
    expect(InvalidFile, _safetensors_with_header(header, b"\0" * 100), "claims bytes 0..6144")


def test_overlapping_tensor_offsets() -> None:
    size = 768 * 4
    header = {
        "clip_l": {"dtype": "F32", "shape": [1, 768], "data_offsets": [0, size]},
        "clip_g": {"dtype": "F32", "shape": [1, 768], "data_offsets": [size // 2, size + size // 2]},
    }
    expect(InvalidFile, _safetensors_with_header(header, b"\0" * (2 * size)), "overlap")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_values(value: float) -> None:
    tensor = torch.zeros(3, 768)
    tensor[1, 5] = value
    error = expect(NonFiniteValues, save_safetensors({"emb_params": tensor}), "NaN or infinite")
    assert error.code == "non_finite"
    expect(NonFiniteValues, torch_bytes({"string_to_param": {"*": tensor}}), "NaN or infinite")


@pytest.mark.parametrize(("rows", "match"), [(0, "0 vectors"), (76, "76 vectors")])
def test_vector_count_out_of_range(rows: int, match: str) -> None:
    error = expect(ShapeMismatch, save_safetensors({"emb_params": torch.zeros(rows, 768)}), match)
    assert "expected 1 to 75" in error.message
    assert error.code == "shape_mismatch"


@pytest.mark.parametrize("width", [512, 4096])
def test_unknown_widths(width: int) -> None:
    error = expect(ShapeMismatch, torch_bytes({"<tok>": torch.zeros(2, width)}), f"width {width}")
    assert "expected 768 (sd1) or 1024 (sd2)" in error.message
    assert f"[2, {width}]" in error.message  # names what was found


def test_sdxl_with_unequal_counts() -> None:
    data = save_safetensors({"clip_l": torch.zeros(4, 768), "clip_g": torch.zeros(5, 1280)})
    expect(ShapeMismatch, data, "clip_l has 4 vectors but clip_g has 5")


def test_sdxl_with_swapped_widths() -> None:
    data = save_safetensors({"clip_l": torch.zeros(4, 1280), "clip_g": torch.zeros(4, 768)})
    expect(ShapeMismatch, data, "clip_l has width 1280; expected 768")


def test_integer_tensors_name_the_dtype() -> None:
    expect(ShapeMismatch, save_safetensors({"emb_params": torch.zeros(2, 768, dtype=torch.int32)}), "dtype int32")


def test_empty_file() -> None:
    expect(InvalidFile, b"", "empty file")


def test_truncated_torch_zip() -> None:
    data = torch_bytes({"emb_params": torch.zeros(4, 768)})
    expect(InvalidFile, data[: len(data) // 2], "truncated")


def test_truncated_safetensors() -> None:
    data = save_safetensors({"emb_params": torch.zeros(4, 768)})
    expect(InvalidFile, data[: len(data) - 100], "claims bytes")


def test_not_an_embedding_at_all() -> None:
    expect(InvalidFile, b"GIF89a" + b"\0" * 64, "not an embedding file")


def test_a_list_is_not_a_single_embedding() -> None:
    expect(ShapeMismatch, torch_bytes([torch.zeros(1, 768), torch.zeros(1, 768)]), "list of 2 items")


def test_a1111_with_two_tensors_is_refused() -> None:
    data = torch_bytes({"string_to_param": {"*": torch.zeros(1, 768), "x": torch.zeros(1, 768)}})
    expect(ShapeMismatch, data, "2 tensors in string_to_param")
