"""Yank semantics, the auth matrix, bad uploads and search paging, on both backends."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import httpx
import pytest
import torch

from tests.integration.api import error_code, get, publish, random_embedding, resolve, torch_file
from tests.integration.servers import Server


def _token(registry: Server, source: str | None, admin: bool = False) -> dict:
    response = httpx.post(f"{registry.url}/api/v1/tokens", headers=registry.headers(),
                          json={"source": source, "admin": admin, "name": "test"})
    assert response.status_code == 201, response.text
    return response.json()


# -- yank (PEP 592) -------------------------------------------------------------------------------


def test_yanked_is_never_latest_but_resolves_when_pinned(registry: Server, source: str) -> None:
    for version, seed in (("1", 1), ("2", 2)):
        assert publish(registry, random_embedding(seed=seed), f"{source}:m@{version}").status_code == 201
    assert resolve(registry, [f"{source}:m"])[0]["record"]["version"] == "2"
    yank = httpx.post(f"{registry.url}/api/v1/embeddings/{source}/m/2/yank", headers=registry.headers(),
                      json={"reason": "broken on sdxl"})
    assert yank.status_code == 200 and yank.json()["yanked"] is True
    latest, pinned = resolve(registry, [f"{source}:m", f"{source}:m@2"])
    assert latest["record"]["version"] == "1"
    assert pinned["record"]["yanked"] is True and pinned["record"]["yanked_reason"] == "broken on sdxl"
    items = get(registry, "/api/v1/embeddings", params={"source": source}).json()["items"]
    assert [i["id"] for i in items] == [f"{source}:m@1"]
    httpx.post(f"{registry.url}/api/v1/embeddings/{source}/m/1/yank", headers=registry.headers(), json={"reason": "x"})
    (all_yanked,) = resolve(registry, [f"{source}:m"])
    assert all_yanked["error"]["code"] == "not_found" and "yanked" in all_yanked["error"]["message"]
    assert get(registry, "/api/v1/embeddings", params={"source": source}).json()["items"] == []
    unyank = httpx.delete(f"{registry.url}/api/v1/embeddings/{source}/m/2/yank", headers=registry.headers())
    assert unyank.json()["yanked"] is False
    assert resolve(registry, [f"{source}:m"])[0]["record"]["version"] == "2"


# -- auth matrix ----------------------------------------------------------------------------------


def test_auth_matrix(registry: Server, source: str) -> None:
    data = random_embedding(seed=11)
    no_token = publish(registry, data, f"{source}:a@1", token="")
    assert no_token.status_code == 401 and error_code(no_token) == "unauthorized"
    garbage = publish(registry, data, f"{source}:a@1", token="pw_not-a-real-token-000000000000")
    assert garbage.status_code == 401
    other = _token(registry, f"{source}x")
    forbidden = publish(registry, data, f"{source}:a@1", token=other["token"])
    assert forbidden.status_code == 403 and error_code(forbidden) == "forbidden"
    own = _token(registry, source)
    assert publish(registry, data, f"{source}:a@1", token=own["token"]).status_code == 201
    yank_other = httpx.post(f"{registry.url}/api/v1/embeddings/{source}/a/1/yank",
                            headers=registry.headers(other["token"]), json={"reason": "no"})
    assert yank_other.status_code == 403
    # a source token cannot manage tokens; the admin can
    assert httpx.get(f"{registry.url}/api/v1/tokens", headers=registry.headers(own["token"])).status_code == 403
    revoke = httpx.delete(f"{registry.url}/api/v1/tokens/{own['id']}", headers=registry.headers())
    assert revoke.status_code == 200 and revoke.json()["revoked"] is True
    revoked = publish(registry, random_embedding(seed=12), f"{source}:a@2", token=own["token"])
    assert revoked.status_code == 401 and "revoked" in revoked.json()["error"]["message"]
    # reads stay public
    assert get(registry, f"/api/v1/embeddings/{source}/a/1").status_code == 200
    assert get(registry, f"/api/v1/embeddings/{source}/a/2").status_code == 404


def test_no_token_value_is_logged_or_stored(registry: Server, source: str) -> None:
    token = _token(registry, source)["token"]
    publish(registry, random_embedding(seed=13), f"{source}:secret@1", token=token)
    publish(registry, random_embedding(seed=13), f"{source}:secret@1", token=token + "x")
    log = registry.log.read_text()
    assert token not in log
    # The first start says where the admin token is, never the token itself.
    assert registry.admin_token not in log and "admin.token" in log
    listed = httpx.get(f"{registry.url}/api/v1/tokens", headers=registry.headers()).text
    assert token not in listed and "token_hash" not in listed
    db_url = registry.env.get("PSEUDOWORD_DATABASE_URL")
    if db_url is None:  # SQLite: scan the database files byte for byte
        blobs = b"".join(p.read_bytes() for p in registry.data_dir.glob("pseudoword.db*") if p.is_file())
        assert token.encode() not in blobs and hashlib.sha256(token.encode()).hexdigest().encode() in blobs
    else:
        import psycopg

        with psycopg.connect(db_url.replace("+psycopg", "")) as conn:
            dump = json.dumps(conn.execute("SELECT * FROM tokens").fetchall(), default=str)
        assert token not in dump and hashlib.sha256(token.encode()).hexdigest() in dump


# -- bad uploads ------------------------------------------------------------------------------------


class _Evil:
    def __init__(self, canary: Path) -> None:
        self.canary = canary

    def __reduce__(self):  # type: ignore[no-untyped-def]
        import os

        return os.system, (f"touch {self.canary}",)


def _bad_files(tmp: Path) -> dict[str, tuple[bytes, int, str]]:
    canary = tmp / "canary"
    good = random_embedding()
    return {
        "pickle": (pickle.dumps({"x": _Evil(canary)}), 422, "unsafe_pickle"),
        "torch-zip-pickle": (torch_file({"string_to_param": {"*": _Evil(canary)}}), 422, "unsafe_pickle"),
        "nan": (torch_file({"emb_params": torch.full((2, 768), float("nan"))}), 422, "non_finite"),
        "width": (torch_file({"emb_params": torch.zeros(2, 512)}), 422, "shape_mismatch"),
        "count": (torch_file({"emb_params": torch.zeros(76, 768)}), 422, "shape_mismatch"),
        "empty": (b"", 422, "invalid_file"),
        "truncated": (good[: len(good) // 2], 422, "invalid_file"),
        "too-large": (b"\0" * (9 * 1024 * 1024), 413, "too_large"),
    }


def test_bad_uploads_are_refused_and_nothing_is_stored(registry: Server, source: str, tmp_path: Path) -> None:
    for name, (data, status, code) in _bad_files(tmp_path).items():
        response = publish(registry, data, f"{source}:{name}@1", filename=f"{name}.pt")
        assert response.status_code == status, (name, response.text[:300])
        assert error_code(response) == code, name
        assert get(registry, f"/api/v1/embeddings/{source}/{name}").status_code == 404
    assert not (tmp_path / "canary").exists()
    assert get(registry, "/api/v1/embeddings", params={"source": source}).json()["items"] == []
    if "PSEUDOWORD_STORAGE_URL" not in registry.env:
        blobs = {p.name for p in (registry.data_dir / "blobs").rglob("*") if p.is_file()}
        assert not any(hashlib.sha256(d).hexdigest() in blobs for d, _, _ in _bad_files(tmp_path).values())


@pytest.mark.parametrize(
    ("metadata", "fragment"),
    [
        ("not json", "not valid JSON"),
        (json.dumps({"trigger": "x"}), "'id' is required"),
        (json.dumps({"id": "bad ref"}), "invalid reference"),
        (json.dumps({"id": "src:m"}), "needs a version"),
        (json.dumps({"id": "src:m@1", "kind": "neutral"}), "'kind'"),
        (json.dumps({"id": "src:m@1", "tags": ["x"] * 40}), "at most 32"),
        (json.dumps({"id": "src:m@1", "description": "x" * 20000}), "at most 10000"),
        (json.dumps({"id": "src:m@1", "trigger": "two words"}), "one word"),
        (json.dumps({"id": "src:m@1", "surprise": 1}), "unknown metadata"),
    ],
)
def test_bad_metadata(registry: Server, metadata: str, fragment: str) -> None:
    response = httpx.post(f"{registry.url}/api/v1/embeddings", headers=registry.headers(),
                          files={"file": ("e.safetensors", random_embedding())}, data={"metadata": metadata})
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"]["message"]


def test_missing_file_part(registry: Server) -> None:
    response = httpx.post(f"{registry.url}/api/v1/embeddings", headers=registry.headers(),
                          data={"metadata": json.dumps({"id": "src:m@1"})})
    assert response.status_code == 400 and error_code(response) == "invalid_request"


# -- search paging --------------------------------------------------------------------------------


@pytest.mark.parametrize("sort", ["relevance", "newest", "downloads"])
def test_cursor_pages_cover_everything_once(registry: Server, source: str, sort: str) -> None:
    for i in range(7):
        publish(registry, random_embedding(seed=100 + i), f"{source}:page{i}@1", tags=["paging"],
                description="glass style " * (i + 1))
    seen: list[str] = []
    cursor = None
    while True:
        params = {"source": source, "sort": sort, "limit": 3, "q": "glass"}
        if cursor:
            params["cursor"] = cursor
        page = get(registry, "/api/v1/embeddings", params=params).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(f"{source}:page{i}@1" for i in range(7))
    assert len(seen) == len(set(seen))


def test_newest_first(registry: Server, source: str) -> None:
    for i in range(3):
        publish(registry, random_embedding(seed=200 + i), f"{source}:n{i}@1")
    items = get(registry, "/api/v1/embeddings", params={"source": source, "sort": "newest"}).json()["items"]
    assert [i["model"] for i in items] == ["n2", "n1", "n0"]


def test_bad_search_parameters(registry: Server) -> None:
    assert error_code(get(registry, "/api/v1/embeddings", params={"sort": "random"})) == "invalid_request"
    assert get(registry, "/api/v1/embeddings", params={"limit": 1000}).status_code == 400
    assert error_code(get(registry, "/api/v1/embeddings", params={"cursor": "garbage!"})) == "invalid_request"


def test_resolve_batch_limit_and_bad_refs(registry: Server) -> None:
    too_many = httpx.post(f"{registry.url}/api/v1/resolve", json={"refs": ["a:b"] * 300})
    assert too_many.status_code == 400 and "at most 256" in too_many.json()["error"]["message"]
    (bad,) = resolve(registry, ["not a ref"])
    assert bad["error"]["code"] == "invalid_reference"


def test_a_full_batch_resolves_every_ref_in_order(registry: Server, source: str) -> None:
    created = publish(registry, random_embedding(seed=77), f"{source}:batch@1")
    assert created.status_code == 201, created.text
    refs = [f"{source}:batch", f"{source}:batch@1", f"{source}:missing"] * 85  # 255: past the inline path
    results = resolve(registry, refs)
    assert [r["ref"] for r in results] == refs
    for ref, result in zip(refs, results):
        if ref.endswith("missing"):
            assert result["error"]["code"] == "not_found"
        else:
            assert result["record"]["sha256"] == created.json()["sha256"]
