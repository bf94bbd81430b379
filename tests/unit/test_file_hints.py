"""What a file says of itself (core/modelspec.py), picklescan's report (core/pickle_scan.py), and the
files derived from a version (core/writing.py): base models from real checkpoint names, ModelSpec
keys, scans of real and hostile pickles, byte-stable exports."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load, save

from pseudoword.registry.core import read_embedding
from pseudoword.registry.core.errors import InvalidRequest
from pseudoword.registry.core.modelspec import base_model_from, canonical_base_model, embedded_thumbnail, file_hints
from pseudoword.registry.core.pickle_scan import scan_file
from pseudoword.registry.core.writing import all_exports, served_formats


@pytest.mark.parametrize(("checkpoint", "architecture", "expected"), [
    ("15_base_v1-5-pruned", "sd1", "SD 1.5"),  # charturnerv2.pt
    ("SD15NewVAEpruned", "sd1", "SD 1.5"),  # eyeliner2.pt
    ("sd-15", "sd1", "SD 1.5"),  # ulzzang-6500.pt
    ("2_base_v2-1_512-ema-pruned", "sd2", "SD 2.1"),  # 21charturnerv2.pt
    ("v2-1_768-ema-pruned", "sd2", "SD 2.1 768"),
    ("sd_xl_base_1.0", "sdxl", "SDXL 1.0"),
    ("ponyDiffusionV6XL_v6StartWithThisOne", "sdxl", "Pony"),
    ("illustriousXL_v01", "sdxl", "Illustrious"),
    ("7th7-any3", "sd1", None),  # a merge: the file does not say which base
    ("BRAV5finalfp16", "sd1", None),
    ("sd_xl_base_1.0", "sd1", None),  # says SDXL but the vectors are 768 wide: not believed
])
def test_base_model_from_a1111_checkpoint_names(checkpoint: str, architecture: str, expected: str | None) -> None:
    assert base_model_from({"sd_checkpoint_name": checkpoint}, architecture) == expected


def test_modelspec_and_kohya_keys() -> None:
    spec = {"modelspec.architecture": "stable-diffusion-v2-768-v/textual-inversion",
            "modelspec.trigger_phrase": "mytoken", "modelspec.is_negative_embedding": "True",
            "modelspec.author": "Jane", "modelspec.license": "MIT", "modelspec.thumbnail": "data:image/png;base64,AA"}
    hints = file_hints(spec, "sd2")
    assert (hints.base_model, hints.trigger, hints.negative, hints.author, hints.license) == \
        ("SD 2.1 768", "mytoken", True, "Jane", "MIT")
    assert file_hints({"modelspec.trigger_phrase": "two words"}, "sd1").trigger is None  # not one prompt word
    assert file_hints({"modelspec.is_negative_embedding": "false"}, "sd1").negative is False
    assert file_hints({}, "sd1") == file_hints({}, "sd1").__class__()
    assert base_model_from({"ss_base_model_version": "sdxl_base_v1-0"}, "sdxl") == "SDXL 1.0"
    assert base_model_from({"ss_base_model_version": "sd_v2", "ss_v_parameterization": "True"}, "sd2") == "SD 2.1 768"


def test_canonical_base_model_names_and_refusals() -> None:
    assert canonical_base_model("sdxl 1.0", "sdxl") == "SDXL 1.0"
    assert canonical_base_model("SD_1.5") == "SD 1.5" and canonical_base_model("other", "sd2") == "Other"
    with pytest.raises(InvalidRequest, match="unknown base model"):
        canonical_base_model("SD 7")
    with pytest.raises(InvalidRequest, match="an sdxl model but the file is sd1"):
        canonical_base_model("Pony", "sd1")


def test_picklescan_reports_real_files_and_hostile_pickles(embeddings_dir, tmp_path) -> None:
    real = scan_file((embeddings_dir / "bad-hands-5.pt").read_bytes())
    assert real.result == "Success" and "torch._utils._rebuild_tensor_v2" in real.imports and not real.dangerous
    assert scan_file((embeddings_dir / "EasyNegative.safetensors").read_bytes()).message == "No Pickle imports"
    canary = tmp_path / "canary"

    class Payload:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.system, (f"touch {canary}",))

    buffer = io.BytesIO()
    torch.save({"string_to_param": {"*": Payload()}}, buffer)
    for data in (buffer.getvalue(), pickle.dumps({"emb_params": Payload()})):
        report = scan_file(data)
        assert report.result == "Danger" and any(name.endswith(".system") for name in report.dangerous)
    assert scan_file(b"\x80\x04garbage").result in ("Error", "Success")  # never raises
    assert not canary.exists()  # scanning runs nothing


def test_every_export_is_byte_stable_across_processes() -> None:
    """Their hashes are recorded at publish: another process must write the very same bytes."""
    vectors = {"clip_l": torch.randn(2, 768, generator=torch.Generator().manual_seed(1)),
               "clip_g": torch.randn(2, 1280, generator=torch.Generator().manual_seed(2))}
    data = save(vectors)
    here = {fmt: content for fmt, content in all_exports(read_embedding(data), "zpd").items()}
    assert list(here) == list(served_formats("sdxl"))
    code = ("import sys, hashlib; from pseudoword.registry.core import read_embedding;"
            "from pseudoword.registry.core.writing import all_exports;"
            "e = read_embedding(sys.stdin.buffer.read());"
            "print(*(f + '=' + hashlib.sha256(b).hexdigest() for f, b in all_exports(e, 'zpd').items()))")
    done = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, check=True)
    import hashlib
    assert done.stdout.decode().split() == [f"{f}={hashlib.sha256(b).hexdigest()}" for f, b in here.items()]
    assert torch.equal(load(here["diffusers-clip_g"])["zpd"], vectors["clip_g"])


def test_exports_do_not_depend_on_the_order_tensors_were_read_in() -> None:
    """safetensors lists a file's tensors in a hash map's order, different in each process: an
    SDXL file read in either order gives the very same bytes in every format."""
    from pseudoword.registry.core.embedding import Embedding

    small, big = torch.randn(2, 768), torch.randn(2, 1280)
    one = Embedding({"clip_l": small, "clip_g": big}, "sdxl", "safetensors", name="zpd")
    other = Embedding({"clip_g": big, "clip_l": small}, "sdxl", "safetensors", name="zpd")
    assert all_exports(one, "zpd") == all_exports(other, "zpd")


def test_a_modelspec_thumbnail_is_read_apart_and_never_kept_in_the_metadata() -> None:
    """kohya's ModelSpec thumbnail (tens of KB of base64) is over the metadata caps: it is taken out
    for the catalogue's preview checks, and the file still reads, without it."""
    import base64

    image = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40  # the catalogue checks the image itself
    url = "data:image/png;base64," + base64.b64encode(image).decode()
    data = save({"emb_params": torch.randn(2, 768)}, metadata={"modelspec.thumbnail": url, "modelspec.title": "T"})
    assert len(url) > 10_000 and embedded_thumbnail(data) == image
    read = read_embedding(data, filename="t.safetensors")
    assert "modelspec.thumbnail" not in read.metadata and read.metadata["modelspec.title"] == "T"
    for value in ("data:text/html;base64,PGI+", "data:image/png;base64,***", "https://example.com/x.png"):
        assert embedded_thumbnail(save({"emb_params": torch.zeros(1, 768)}, metadata={"modelspec.thumbnail": value})) is None
    assert embedded_thumbnail(b"PK\x03\x04 not safetensors") is None
