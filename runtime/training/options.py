"""What a training run is asked to do: one typed record, checked before anything is loaded.

Defaults follow the textual-inversion paper and the tools people already use: one vector,
AdamW at a constant learning rate of 5e-3 (AUTOMATIC1111's default), batch 1, 2,000 steps,
images at the pipeline's native resolution.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from pseudoword.registry.core.embedding import MAX_VECTORS
from pseudoword.registry.core.errors import InvalidRequest
from pseudoword.registry.core.text import check_text
from pseudoword.registry.core.triggers import MAX_TRIGGER_CHARS, trigger_from_stem

Kind = Literal["object", "style"]
KINDS: tuple[str, ...] = ("object", "style")
#: The init word when none is given: a single CLIP token that says what is learned.
DEFAULT_INIT_WORDS = {"object": "object", "style": "style"}
MAX_STEPS = 100_000
MAX_BATCH = 64


@dataclass(frozen=True)
class TrainOptions:
    """One training run. ``out`` is the embedding file; the loss CSV/PNG, checkpoints and
    samples go beside it (``NAME.loss.csv``, ``NAME.loss.png``, ``NAME.checkpoints/``,
    ``NAME.samples/``)."""

    images: Path
    trigger: str
    out: Path
    init_word: str | None = None  # None: "object" or "style" after the kind
    vectors: int = 1
    kind: Kind = "object"
    steps: int = 2000
    lr: float = 5e-3
    batch: int = 1
    resolution: int | None = None  # None: the pipeline's native size
    seed: int = 0
    checkpoint_every: int = 500  # 0: no checkpoints
    sample_every: int = 500  # 0: no samples
    sample_steps: int = 20  # denoising steps of each sample image
    resume: bool = False
    weight_decay: float = 1e-2  # AdamW's, as diffusers' example uses
    crops: bool = True  # also train on four corner crops (7/8 of the side) of each image

    def __post_init__(self) -> None:
        object.__setattr__(self, "images", Path(self.images))
        object.__setattr__(self, "out", Path(self.out))
        _check_trigger(self.trigger)
        if self.kind not in KINDS:
            raise InvalidRequest(f"kind must be object or style, got {self.kind!r}", {"field": "kind"})
        _range("vectors", self.vectors, 1, MAX_VECTORS)
        _range("steps", self.steps, 1, MAX_STEPS)
        _range("batch", self.batch, 1, MAX_BATCH)
        _range("seed", self.seed, 0, 2**63 - 1)
        _range("checkpoint_every", self.checkpoint_every, 0, MAX_STEPS)
        _range("sample_every", self.sample_every, 0, MAX_STEPS)
        _range("sample_steps", self.sample_steps, 1, 150)
        if self.resolution is not None:
            _range("resolution", self.resolution, 64, 2048)
            if self.resolution % 8:
                raise InvalidRequest(f"resolution {self.resolution} must be a multiple of 8",
                                     {"field": "resolution"})
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr <= 1):
            raise InvalidRequest(f"lr must be a number in (0, 1], got {self.lr!r}", {"field": "lr"})
        if self.init_word is not None and (not self.init_word.strip() or len(self.init_word) > MAX_TRIGGER_CHARS):
            raise InvalidRequest("init word must be one non-empty word", {"field": "init_word"})
        if self.out.suffix.lower() != ".safetensors":
            raise InvalidRequest(f"--out {self.out.name} must end in .safetensors (the canonical file)",
                                 {"field": "out"})

    @property
    def init(self) -> str:
        return (self.init_word or DEFAULT_INIT_WORDS[self.kind]).strip()

    def beside(self, suffix: str) -> Path:
        """A path next to the output: ``NAME{suffix}``."""
        return self.out.with_name(self.out.stem + suffix)

    @property
    def loss_csv(self) -> Path:
        return self.beside(".loss.csv")

    @property
    def loss_png(self) -> Path:
        return self.beside(".loss.png")

    @property
    def checkpoint_dir(self) -> Path:
        return self.beside(".checkpoints")

    @property
    def sample_dir(self) -> Path:
        return self.beside(".samples")

    def to_dict(self) -> dict[str, Any]:
        return {key: str(value) if isinstance(value, Path) else value for key, value in asdict(self).items()}


def _range(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequest(f"{name} must be a whole number from {low} to {high}, got {value!r}", {"field": name})


def _check_trigger(trigger: Any) -> None:
    """A trigger is one prompt word under the core's rule (no spaces or commas)."""
    if not isinstance(trigger, str) or not trigger.strip():
        raise InvalidRequest("trigger must be a non-empty word", {"field": "trigger"})
    check_text(trigger, "trigger")
    if trigger_from_stem(trigger) != trigger:
        raise InvalidRequest(f"trigger {trigger!r} must be one prompt word (no spaces or commas, at most "
                             f"{MAX_TRIGGER_CHARS} characters): e.g. {trigger_from_stem(trigger)!r}",
                             {"field": "trigger"})
