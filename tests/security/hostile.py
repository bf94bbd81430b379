"""Hostile inputs, each standing for a class of attack on the registry: small files that describe
huge tensors, metadata that grows when printed, text that breaks headers or PostgreSQL, malformed
multipart bodies, forged cursors, absurd numbers and nesting. Each case says what the registry
must answer (status and error code); none may answer 5xx or store anything."""

from __future__ import annotations

import base64
import io
import json
import struct
import zipfile
from dataclasses import dataclass, field
from typing import Any

import torch
from safetensors.torch import save as save_safetensors

from tests.integration.api import random_embedding, torch_file

MiB = 1024 * 1024


@dataclass(frozen=True)
class Upload:
    """A publish: file bytes plus the metadata JSON (or a raw multipart body)."""

    name: str
    data: bytes
    status: int
    code: str
    metadata: dict[str, Any] = field(default_factory=dict)  # merged over {"id": ...}
    filename: str = "emb.pt"
    raw_metadata: str | None = None  # sent as is instead


@dataclass(frozen=True)
class Raw:
    """A request sent as given (method, path, headers, body)."""

    name: str
    method: str
    path: str
    status: int
    code: str | None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    token: bool = False


def _safetensors_with_header(header: dict[str, Any] | str, body: bytes = b"") -> bytes:
    text = (header if isinstance(header, str) else json.dumps(header)).encode()
    return struct.pack("<Q", len(text)) + text + body


def _deflated_torch_zip(tensor_bytes: int) -> bytes:
    """A torch zip whose one storage (zeros) is stored deflated: a few KB on the wire."""
    plain = torch_file({"emb_params": torch.zeros(tensor_bytes // 4)})
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(plain)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info.filename), compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def _memoised_list(size: int) -> list[list[int]]:
    inner = list(range(100))
    return [inner] * size  # pickled as one list plus memo references: small on disk, long as text


def hostile_uploads() -> list[Upload]:
    good = random_embedding()
    a1111 = {"string_to_token": {"*": 265}, "name": "word"}
    return [
        # Tensors that claim far more than the file holds (checked on metadata, before any copy).
        Upload("stride-0 view", torch_file({"emb_params": torch.zeros(1).expand(200_000, 768)}), 422, "shape_mismatch"),
        Upload("overlapping view", torch_file({"emb_params": torch.zeros(768 + 75).as_strided((75, 768), (1, 1))}),
               422, "shape_mismatch"),
        Upload("meta device", torch_file({"emb_params": torch.empty(2, 768, device="meta")}), 422, "shape_mismatch"),
        Upload("sparse", torch_file({"emb_params": torch.zeros(2, 768).to_sparse()}), 422, "shape_mismatch"),
        Upload("integer dtype", torch_file({"emb_params": torch.zeros(2, 768, dtype=torch.int64)}), 422, "shape_mismatch"),
        Upload("3 dimensions", torch_file({"emb_params": torch.zeros(2, 2, 768)}), 422, "shape_mismatch"),
        Upload("clip_l alone", save_safetensors({"clip_l": torch.zeros(2, 768)}), 422, "shape_mismatch",
               filename="half.safetensors"),
        Upload("clip_g alone (pickle)", torch_file({"clip_g": torch.zeros(2, 1280)}), 422, "shape_mismatch"),
        # Metadata that grows when turned into text, or is too long to keep.
        Upload("memoised list as step", torch_file({**a1111, "string_to_param": {"*": torch.zeros(2, 768)},
                                                     "step": _memoised_list(2000)}), 422, "invalid_file"),
        Upload("100,000-digit step", torch_file({**a1111, "string_to_param": {"*": torch.zeros(2, 768)},
                                                  "step": 10**100_000}), 422, "unsafe_pickle"),
        Upload("20-digit step", torch_file({**a1111, "string_to_param": {"*": torch.zeros(2, 768)},
                                            "step": 10**20}), 422, "invalid_file"),
        Upload("over-long name in the file", torch_file({**a1111, "name": "n" * 5000,
                                                         "string_to_param": {"*": torch.zeros(2, 768)}}),
               413, "too_large"),
        Upload("NUL in the name in the file", torch_file({**a1111, "name": "bad\x00name",
                                                          "string_to_param": {"*": torch.zeros(2, 768)}}),
               422, "invalid_file"),
        Upload("over-long source_format", save_safetensors({"emb_params": torch.zeros(2, 768)},
                                                           metadata={"pseudoword.source_format": "s" * 200}),
               422, "invalid_file", filename="x.safetensors"),
        Upload("huge metadata value", save_safetensors({"emb_params": torch.zeros(2, 768)},
                                                       metadata={"ss_note": "x" * 100_000}),
               413, "too_large", filename="x.safetensors"),
        Upload("record too large as a whole", save_safetensors({"emb_params": torch.zeros(2, 768)},
                                                               metadata={f"note{i}": "x" * 1000 for i in range(7)}),
               413, "too_large", {"description": "y" * 9900}, "x.safetensors"),
        Upload("many metadata entries", save_safetensors({"emb_params": torch.zeros(2, 768)},
                                                         metadata={f"k{i}": "v" for i in range(500)}),
               413, "too_large", filename="x.safetensors"),
        # Parsers: nesting, numbers past their limits, lies about sizes.
        Upload("deeply nested safetensors header", _safetensors_with_header('{"a":' + "[" * 200_000 + "]" * 200_000 + "}"),
               422, "invalid_file", filename="x.safetensors"),
        Upload("5,000-digit shape", _safetensors_with_header(
            '{"emb_params":{"dtype":"F32","shape":[' + "9" * 5000 + ',768],"data_offsets":[0,8]}}', b"\0" * 8),
               422, "invalid_file", filename="x.safetensors"),
        Upload("pickle larger than an embedding's", torch_file({**a1111, "string_to_param": {"*": torch.zeros(2, 768)},
                                                               "junk": list(range(40_000))}), 413, "too_large"),
        Upload("deflated 12 MiB storage", _deflated_torch_zip(12 * MiB), 422, "shape_mismatch"),
        Upload("deflated 40 MiB storage", _deflated_torch_zip(40 * MiB), 413, "too_large"),
        Upload("8 MiB of zeros", b"\0" * (8 * MiB), 422, "invalid_file"),
        Upload("8 MiB torch file", torch_file({"emb_params": torch.zeros(2 * MiB - 512)}), 422, "shape_mismatch"),
        # Metadata a user types: control and format characters, an ecosystem the file contradicts.
        Upload("NUL in trigger", good, 400, "invalid_request", {"trigger": "bad\x00word"}, "x.safetensors"),
        Upload("escape in title", good, 400, "invalid_request", {"title": "\x1b[31mred"}, "x.safetensors"),
        Upload("bidi override in description", good, 400, "invalid_request",
               {"description": "evil\u202etxt.exe"}, "x.safetensors"),
        Upload("zero-width space in trigger", good, 400, "invalid_request", {"trigger": "a\u200bb"}, "x.safetensors"),
        Upload("bell in a tag", good, 400, "invalid_request", {"tags": ["ok", "ding\x07"]}, "x.safetensors"),
        Upload("lone surrogate in title", good, 400, "invalid_request", {"title": "\ud800"}, "x.safetensors"),
        Upload("AIR ecosystem contradicts the file", good, 422, "architecture_mismatch",
               {"id": "urn:air:sdxl:embedding:{source}:air@1"}, "x.safetensors"),
        Upload("deeply nested metadata", good, 400, "invalid_request", filename="x.safetensors",
               raw_metadata='{"id": "{source}:nest@1", "title": ' + "[" * 100_000 + "]" * 100_000 + "}"),
    ]


def _multipart(parts: list[tuple[dict[str, str], bytes]], boundary: str = "hostileboundary") -> tuple[dict[str, str], bytes]:
    body = b""
    for headers, content in parts:
        body += f"--{boundary}\r\n".encode()
        body += b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in headers.items()) + b"\r\n" + content + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return {"Content-Type": f"multipart/form-data; boundary={boundary}"}, body


def hostile_requests(source: str) -> list[Raw]:
    good = random_embedding(seed=4)
    meta = json.dumps({"id": f"{source}:raw@1"}).encode()
    file_part = ({"Content-Disposition": 'form-data; name="file"; filename="e.safetensors"',
                  "Content-Type": "application/octet-stream"}, good)
    meta_part = ({"Content-Disposition": 'form-data; name="metadata"'}, meta)
    cases = []
    for name, parts in (
        ("metadata part in an unknown charset", [file_part, ({"Content-Disposition": 'form-data; name="metadata"',
                                                              "Content-Type": "text/plain; charset=x-no-such"}, meta)]),
        ("metadata that is not UTF-8", [file_part, ({"Content-Disposition": 'form-data; name="metadata"'},
                                                    b'{"id": "' + source.encode() + b':raw@1", "title": "\xff\xfe"}')]),
        ("file part without a filename", [({"Content-Disposition": 'form-data; name="file"'}, good), meta_part]),
        ("no file part", [meta_part]),
        ("control character in the file name", [({"Content-Disposition": 'form-data; name="file"; filename="x\x01y.pt"',
                                                  "Content-Type": "application/octet-stream"}, good), meta_part]),
    ):
        headers, body = _multipart(parts)
        cases.append(Raw(name, "POST", "/api/v1/embeddings", 400, "invalid_request", headers, body, token=True))
    headers, body = _multipart([file_part, meta_part])
    cases.append(Raw("publish without a token (body never parsed)", "POST", "/api/v1/embeddings", 401,
                     "unauthorized", headers, body))
    deep = ("[" * 100_000 + "]" * 100_000).encode()
    cursors = {
        "relevance": {"s": "relevance", "k": 1.0, "i": 2**63}, "downloads": {"s": "downloads", "k": 2**64, "i": 1},
        "newest": {"s": "newest", "k": "not a date", "i": 1}, "booleans": {"s": "newest", "k": True, "i": False},
        "huge float": {"s": "relevance", "k": 1e400, "i": 1},
        "window past int64": {"s": "relevance", "k": 1.0, "i": 1, "w": 2**63},
        "window not a number": {"s": "relevance", "k": 1.0, "i": 1, "w": "1"},
    }
    for name, cursor in cursors.items():
        token = base64.urlsafe_b64encode(json.dumps(cursor).encode()).decode().rstrip("=")
        sort = cursor["s"] if cursor["s"] != "newest" or name != "booleans" else "newest"
        cases.append(Raw(f"forged cursor ({name})", "GET", f"/api/v1/embeddings?q=style&sort={sort}&cursor={token}",
                         400, "invalid_request"))
    for param in ("tag", "source", "architecture", "kind"):
        cases.append(Raw(f"NUL in the {param} filter", "GET", f"/api/v1/embeddings?{param}=a%00b", 400, "invalid_request"))
    cases += [
        Raw("NUL in the query", "GET", "/api/v1/embeddings?q=a%00b", 200, None),
        Raw("deeply nested resolve body", "POST", "/api/v1/resolve", 400, "invalid_request",
            {"Content-Type": "application/json"}, b'{"refs": ' + deep + b"}"),
        Raw("resolve body that is not JSON", "POST", "/api/v1/resolve", 400, "invalid_request",
            {"Content-Type": "application/json"}, b"\xff\xfe{"),
        Raw("revoke token 10^20", "DELETE", "/api/v1/tokens/100000000000000000000", 400, "invalid_request", token=True),
        Raw("revoke token 2^63", "DELETE", f"/api/v1/tokens/{2**63}", 400, "invalid_request", token=True),
        Raw("token for a reserved source", "POST", "/api/v1/tokens", 400, "invalid_reference",
            {"Content-Type": "application/json"}, json.dumps({"source": "sha256"}).encode(), token=True),
        Raw("token name with an escape", "POST", "/api/v1/tokens", 400, "invalid_request",
            {"Content-Type": "application/json"}, json.dumps({"source": source, "name": "\x1b]0;x\x07"}).encode(),
            token=True),
        Raw("yank reason with NUL", "POST", f"/api/v1/embeddings/{source}/kept/1/yank", 400, "invalid_request",
            {"Content-Type": "application/json"}, json.dumps({"reason": "a\x00b"}).encode(), token=True),
        Raw("5,000-digit Range", "GET", f"/api/v1/embeddings/{source}/kept/1/download", 206, None,
            {"Range": "bytes=0-" + "9" * 5000}),
        Raw("5,000-digit Range start", "GET", f"/api/v1/embeddings/{source}/kept/1/download", 416, None,
            {"Range": "bytes=" + "9" * 5000 + "-"}),
        Raw("by-hash of 5,000 characters", "GET", "/api/v1/by-hash/" + "a" * 5000, 400, "invalid_request"),
        Raw("version of a reserved source", "GET", "/api/v1/embeddings/sha256/x/1", 400, "invalid_reference"),
        Raw("export in an unknown format", "GET", f"/api/v1/embeddings/{source}/kept/1/download?format=ckpt",
            400, "invalid_request"),
        Raw("blob export (exports belong to versions)", "GET", "/api/v1/blobs/" + "0" * 64 + "?format=a1111",
            400, "invalid_request"),
    ]
    return cases
