"""What an embedding file says about itself beyond its vectors: the base model it was trained on
(AUTOMATIC1111's ``sd_checkpoint_name``, kohya's ``ss_base_model_version`` and the SAI ModelSpec
``modelspec.*`` keys), and ModelSpec's trigger phrase, negative flag, title, description, author and
licence. The catalogue fills what the publisher did not give from here."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass

from pseudoword.registry.core.env import TRUE
from pseudoword.registry.core.errors import InvalidRequest, PseudowordError

#: Base models people name (Civitai's ``baseModel`` vocabulary), by the architecture of their text
#: encoders. "Other" fits any architecture.
BASE_MODELS: dict[str, str] = {
    "SD 1.4": "sd1", "SD 1.5": "sd1", "SD 1.5 LCM": "sd1", "SD 1.5 Hyper": "sd1",
    "SD 2.0": "sd2", "SD 2.0 768": "sd2", "SD 2.1": "sd2", "SD 2.1 768": "sd2", "SD 2.1 Unclip": "sd2",
    "SDXL 0.9": "sdxl", "SDXL 1.0": "sdxl", "SDXL 1.0 LCM": "sdxl", "SDXL Turbo": "sdxl", "SDXL Lightning": "sdxl",
    "SDXL Hyper": "sdxl", "Pony": "sdxl", "Illustrious": "sdxl", "NoobAI": "sdxl",
    "Other": "",
}
_BY_KEY = {re.sub(r"[\s_.-]", "", name.lower()): name for name in BASE_MODELS}
#: ModelSpec ``architecture`` prefixes (before ``/textual-inversion``) and kohya base versions.
_SPEC_ARCHITECTURES = {
    "stable-diffusion-v1": "SD 1.5", "stable-diffusion-v2-512": "SD 2.1", "stable-diffusion-v2-768-v": "SD 2.1 768",
    "stable-diffusion-xl-v1-base": "SDXL 1.0", "stable-diffusion-xl-v0-9-base": "SDXL 0.9",
}
_KOHYA_VERSIONS = {"sd_v1": "SD 1.5", "sd_v2": "SD 2.1", "sdxl_base_v0-9": "SDXL 0.9", "sdxl_base_v1-0": "SDXL 1.0"}
#: Checkpoint names (A1111's ``sd_checkpoint_name``, kohya's ``ss_sd_model_name``), first match wins.
_CHECKPOINT_NAMES: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p), name) for p, name in (
    (r"pony", "Pony"), (r"illustrious", "Illustrious"), (r"noob", "NoobAI"),
    (r"sd_?xl.*turbo|xl.*turbo", "SDXL Turbo"), (r"sd_?xl|xl_?base|_xl|xl_|xl$", "SDXL 1.0"),
    (r"(v2-?1|2[._]1|sd21).*768|768.*(v2-?1|2[._]1)|768-v-ema", "SD 2.1 768"),
    (r"v2-?1|2[._]1|sd21", "SD 2.1"), (r"(v2-?0|2[._]0|sd20).*768", "SD 2.0 768"), (r"v2-?0|2[._]0|sd20", "SD 2.0"),
    (r"v1-?5|1[._]5|sd-?15|sd_?15|^15_", "SD 1.5"), (r"v1-?4|1[._]4|sd-?14", "SD 1.4"),
))


@dataclass(frozen=True)
class FileHints:
    """What a file's metadata says; None where it says nothing usable."""

    base_model: str | None = None
    trigger: str | None = None  # modelspec.trigger_phrase, when it is one prompt word
    negative: bool | None = None  # modelspec.is_negative_embedding
    title: str | None = None
    description: str | None = None
    author: str | None = None
    license: str | None = None


def canonical_base_model(text: str, architecture: str | None = None) -> str:
    """A base model name as the catalogue spells it (``sdxl 1.0`` -> ``SDXL 1.0``); InvalidRequest
    for an unknown one, or one made for other text encoders than ``architecture``."""
    name = _BY_KEY.get(re.sub(r"[\s_.-]", "", text.strip().lower()))
    if name is None:
        raise InvalidRequest(f"unknown base model {text[:64]!r}; expected one of: {', '.join(BASE_MODELS)}",
                             {"base_models": list(BASE_MODELS)})
    if architecture and BASE_MODELS[name] and BASE_MODELS[name] != architecture:
        raise InvalidRequest(f"base model {name!r} is an {BASE_MODELS[name]} model but the file is {architecture}",
                             {"base_model": name, "architecture": architecture})
    return name


def base_model_from(metadata: Mapping[str, str], architecture: str) -> str | None:
    """The base model the file names, when it names one that fits its architecture."""
    candidates: list[str | None] = []
    spec = metadata.get("modelspec.architecture", "").split("/")[0]
    candidates.append(_SPEC_ARCHITECTURES.get(spec))
    kohya = metadata.get("ss_base_model_version", "")
    if kohya == "sd_v2" and metadata.get("ss_v_parameterization", "").lower() in TRUE:
        candidates.append("SD 2.1 768")
    candidates.append(_KOHYA_VERSIONS.get(kohya))
    for key in ("sd_checkpoint_name", "ss_sd_model_name"):
        checkpoint = metadata.get(key, "").lower()
        candidates.append(next((name for pattern, name in _CHECKPOINT_NAMES if pattern.search(checkpoint)), None)
                          if checkpoint else None)
    return next((c for c in candidates if c and BASE_MODELS[c] == architecture), None)


def file_hints(metadata: Mapping[str, str], architecture: str) -> FileHints:
    """Everything the catalogue may take from a file's metadata."""
    phrase = metadata.get("modelspec.trigger_phrase", "").strip()
    negative = metadata.get("modelspec.is_negative_embedding", "").strip().lower()

    def text(key: str) -> str | None:
        return metadata.get(key, "").strip() or None

    return FileHints(
        base_model=base_model_from(metadata, architecture),
        trigger=phrase if phrase and not re.search(r"[\s,]", phrase) else None,
        negative=(negative in TRUE) if negative else None,
        title=text("modelspec.title"), description=text("modelspec.description"),
        author=text("modelspec.author"), license=text("modelspec.license"),
    )


_DATA_URL = re.compile(r"data:image/(png|jpeg|webp);base64,([A-Za-z0-9+/=\s]+)", re.I)


def embedded_thumbnail(data: bytes) -> bytes | None:
    """The image of a safetensors file's ``modelspec.thumbnail`` (a base64 ``data:`` URL), for the
    catalogue to check like any uploaded preview; None when the file has none or it is not one.
    The header's own size limit bounds it; reading never decodes anything else."""
    from pseudoword.registry.core.reading import META_THUMBNAIL, safetensors_header

    if len(data) < 8:
        return None
    try:
        metadata = safetensors_header(data).get("__metadata__") or {}
    except (PseudowordError, ValueError):  # not a safetensors file: pickles carry no ModelSpec
        return None
    found = _DATA_URL.fullmatch(str(metadata.get(META_THUMBNAIL, "")).strip())
    if found is None:
        return None
    try:
        return base64.b64decode("".join(found[2].split()), validate=True)
    except (binascii.Error, ValueError):
        return None
