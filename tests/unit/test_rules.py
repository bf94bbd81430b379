"""The record rules, each defined once in the core: latest, hash lengths, architecture by width."""

from __future__ import annotations

from pseudoword.registry.core.versions import latest_version


def _v(version: str, created: str, yanked: bool = False) -> dict[str, object]:
    return {"version": version, "created_at": created, "yanked": yanked}


def test_latest_is_the_newest_not_yanked() -> None:
    versions = [_v("1", "2026-01-01T00:00:00Z"), _v("3", "2026-03-01T00:00:00Z", yanked=True),
                _v("2", "2026-02-01T00:00:00Z")]
    assert latest_version(versions) == versions[2]
    assert latest_version([_v("1", "2026-01-01T00:00:00Z", yanked=True)]) is None
    assert latest_version([]) is None


def test_the_client_splits_a_long_resolve_into_requests_the_service_accepts() -> None:
    import json

    import httpx

    from pseudoword.registry.client import RegistryClient
    from pseudoword.registry.core.limits import MAX_RESOLVE_REFS
    from pseudoword.registry.service.settings import Settings

    sizes: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        refs = json.loads(request.content)["refs"]
        sizes.append(len(refs))
        return httpx.Response(200, json={"results": [{"ref": ref, "error": {"code": "not_found"}} for ref in refs]})

    refs = [f"s:m{i}@1" for i in range(2 * MAX_RESOLVE_REFS + 3)]
    with RegistryClient("http://registry.test", transport=httpx.MockTransport(answer)) as client:
        results = client.resolve(refs)
    assert [r["ref"] for r in results] == refs
    assert sizes == [MAX_RESOLVE_REFS, MAX_RESOLVE_REFS, 3]
    assert Settings().max_resolve_refs == MAX_RESOLVE_REFS


#: Each rule's defining text, and the one file that may hold it (`grep` finds one definition).
DEFINITIONS = {
    r'"sha256": 64': "registry/core/hashes.py",
    r'"autov2": 10': "registry/core/hashes.py",
    r'\b768: "sd1"': None,
    r"^ARCH_BY_WIDTH\b.*=": "registry/core/embedding.py",
    r'"http://127\.0\.0\.1:8000"': "registry/core/env.py",
    r'"yes", "on"|"on", "yes"|\{"1", "true"|"true", "yes"': "registry/core/env.py",
    r"= 256\b": "registry/core/limits.py",
    r"os\.replace\(": "registry/core/files.py",
    r"not \w+\.get\(\"yanked\"\)|if not r\.get\(\"yanked\"\)|versions\[0\]": None,
    r"def trigger_from_stem|def default_trigger": "registry/core/triggers.py",
    r'\("sd1", "sd2", "sdxl"\)': "registry/core/embedding.py",
    r'\("relevance", "newest", "downloads"\)': "registry/service/search.py",
}


def test_each_rule_is_defined_once() -> None:
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    sources = [p for folder in ("registry", "runtime", "cli") for p in (root / folder).rglob("*.py")]
    sources += [p for p in (root / "registry").rglob("*.html")]
    for pattern, home in DEFINITIONS.items():
        holders = sorted(str(p.relative_to(root)) for p in sources if re.search(pattern, p.read_text(), re.M))
        assert holders == ([home] if home else []), f"{pattern!r} is defined in {holders}, expected {home}"


def _wire(model: str, version: str = "1", **extra: object) -> dict[str, object]:
    """A version record as the service sends it."""
    return {"id": f"s:{model}@{version}", "air": f"urn:air:sd1:embedding:s:{model}@{version}", "source": "s",
            "model": model, "version": version, "architecture": "sd1", "vectors": 2, "kind": "positive",
            "trigger": model, "sha256": "ab" * 32, "size": 100, "yanked": False, **extra}


def test_the_version_record_round_trips_the_wire_and_keeps_new_fields() -> None:
    import pytest

    from pseudoword.registry.core.errors import InvalidResponse
    from pseudoword.registry.core.record import VersionRecord

    preview = {"url": "/p.png", "thumbnail_url": "/t.webp", "sha256": "cd" * 32, "format": "png",
               "media_type": "image/png", "width": 64, "height": 48, "size": 900, "parameters": None}
    wire = _wire("glow", tags=["a"], previews=[preview], downloads=3, future={"x": 1})
    record = VersionRecord.from_wire(wire)
    assert record.id == "s:glow@1" and record.tags == ("a",) and record.extra == {"future": {"x": 1}}
    assert record.previews and record.previews[0].width == 64 and record.files is None, "previews are typed records"
    assert record.to_wire()["previews"] == [preview] and record.to_wire()["downloads"] == 3
    assert record.to_wire()["future"] == {"x": 1} and "files" not in record.to_wire()
    assert VersionRecord.from_wire(record.to_wire()) == record
    assert "downloads" not in VersionRecord.from_wire(_wire("glow")).to_wire(), "resolve records carry no count"
    with pytest.raises(InvalidResponse, match="'vectors' is '2'; expected a whole number"):
        VersionRecord.from_wire(_wire("glow", vectors="2"))
    with pytest.raises(InvalidResponse, match="'width' is '64'; expected a whole number"):
        VersionRecord.from_wire(_wire("glow", previews=[{**preview, "width": "64"}]))
    with pytest.raises(InvalidResponse, match="a preview must be a JSON object"):
        VersionRecord.from_wire(_wire("glow", previews=["/p.png"]))
    with pytest.raises(InvalidResponse, match="'sha256' is None"):
        VersionRecord.from_wire({**_wire("glow"), "sha256": None})


def test_iter_search_pages_until_the_limit_or_the_end() -> None:
    import httpx

    from pseudoword.registry.client import RegistryClient

    asked: list[dict[str, str]] = []
    total = 250

    def answer(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        asked.append(params)
        start = int(params.get("cursor") or 0)
        end = min(total, start + int(params["limit"]))
        items = [_wire(f"m{i}") for i in range(start, end)]
        return httpx.Response(200, json={"items": items, "next_cursor": str(end) if end < total else None})

    with RegistryClient("http://registry.test", transport=httpx.MockTransport(answer)) as client:
        every = list(client.iter_search("cat", kind="negative"))
        assert [item.id for item in every] == [f"s:m{i}@1" for i in range(total)]
        assert [a["limit"] for a in asked] == ["100", "100", "100"] and asked[0]["kind"] == "negative"
        asked.clear()
        pages = client.iter_search(limit=130)
        assert len(list(pages)) == 130 and pages.next_cursor == "130"
        assert [a["limit"] for a in asked] == ["100", "30"]
