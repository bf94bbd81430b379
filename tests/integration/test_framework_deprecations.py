"""The app builds without Litestar's deprecation warnings (styles that stop working in 3.0)."""

from __future__ import annotations

import warnings
from pathlib import Path


def test_the_app_uses_no_style_litestar_3_drops(tmp_path: Path) -> None:
    from pseudoword.registry.service.app import create_app
    from pseudoword.registry.service.settings import Settings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        app = create_app(Settings(data_dir=tmp_path))
        app.openapi_schema  # noqa: B018 - the schema is built on first use
    deprecations = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)
                    and "litestar" in (w.filename + type(w.message).__module__)]
    assert deprecations == []
