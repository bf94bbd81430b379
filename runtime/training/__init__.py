"""Training a new embedding (textual inversion) from a few images: ``train(TrainOptions(...), pipe)``.

Only the new vectors are learned, through the runtime's own swap-in (``conditioning.run_encoder``),
so the pipeline is never changed and training can run beside serving. Modules: ``options`` (the
typed record), ``images`` (folder, captions, views), ``latents`` (the VAE once), ``templates``,
``vocabulary`` (trigger and init word), ``prompt_rows``, ``device`` (precision, attention),
``checkpoint``, ``metadata`` (our keys, A1111's, ModelSpec's), ``plot``, ``samples``, ``trainer``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pseudoword.runtime.training.options import TrainOptions
    from pseudoword.runtime.training.trainer import StepReport, TrainResult, train

__all__ = ["StepReport", "TrainOptions", "TrainResult", "train"]

_WHERE = {"TrainOptions": "options", "StepReport": "trainer", "TrainResult": "trainer", "train": "trainer"}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'pseudoword.runtime.training' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"pseudoword.runtime.training.{module}"), name)
