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
