"""Sampler names as people write them (AUTOMATIC1111, Civitai) -> diffusers schedulers.

The table follows diffusers' own A1111 correspondence (docs: "Schedulers" overview). Names
are matched loosely: case, spaces, ``+`` and punctuation do not matter, so ``DPM++ 2M Karras``,
``dpmpp_2m_karras`` and Civitai's ``DPM2MKarras`` are the same. A new scheduler object is made
for every request from the pipeline's scheduler config: schedulers keep per-run state, so a
shared one must never be reconfigured.
"""

from __future__ import annotations

import re
from typing import Any

from pseudoword.registry.core.errors import InvalidRequest

#: canonical display name -> (diffusers class name, config overrides)
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "DPM++ 2M SDE Karras": ("DPMSolverMultistepScheduler",
                            {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True}),
    "DPM++ 2S a Karras": ("DPMSolverSinglestepScheduler", {"use_karras_sigmas": True}),
    "DPM++ SDE": ("DPMSolverSDEScheduler", {}),
    "DPM++ SDE Karras": ("DPMSolverSDEScheduler", {"use_karras_sigmas": True}),
    "DPM2": ("KDPM2DiscreteScheduler", {}),
    "DPM2 Karras": ("KDPM2DiscreteScheduler", {"use_karras_sigmas": True}),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {}),
    "DPM2 a Karras": ("KDPM2AncestralDiscreteScheduler", {"use_karras_sigmas": True}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
    "LMS Karras": ("LMSDiscreteScheduler", {"use_karras_sigmas": True}),
    "DDIM": ("DDIMScheduler", {}),
    "PNDM": ("PNDMScheduler", {}),
    "DDPM": ("DDPMScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "DEIS": ("DEISMultistepScheduler", {}),
    "LCM": ("LCMScheduler", {}),
}

#: Other spellings in use (after normalisation) -> canonical name.
_ALIASES = {
    "eulerancestral": "Euler a",
    "plms": "PNDM",
    "dpm2m": "DPM++ 2M",  # Civitai's API names drop the "++"
    "dpm2mkarras": "DPM++ 2M Karras",
    "dpmsde": "DPM++ SDE",
    "dpmsdekarras": "DPM++ SDE Karras",
    "dpm2ancestral": "DPM2 a",
    "dpm2akarras": "DPM2 a Karras",
    "dpmpp2sakarras": "DPM++ 2S a Karras",
    "unipcmultistep": "UniPC",
}


def normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower().replace("++", "pp"))


_BY_KEY: dict[str, str] = {normalise(name): name for name in SCHEDULERS}
for _alias, _name in _ALIASES.items():
    _BY_KEY.setdefault(_alias, _name)


def canonical_name(name: str) -> str:
    """The display name for ``name``, or InvalidRequest listing the known ones."""
    found = _BY_KEY.get(normalise(name))
    if found is None:
        raise InvalidRequest(
            f"unknown scheduler {name!r}; known: {', '.join(SCHEDULERS)}",
            {"scheduler": name, "known": list(SCHEDULERS)},
        )
    return found


def make_scheduler(name: str | None, base: Any) -> Any:
    """A fresh scheduler for one request: ``name``'s class (or the class of ``base``, the
    pipeline's scheduler, when None) configured from ``base``'s config."""
    import diffusers

    if name is None:
        cls, cls_name, overrides = type(base), type(base).__name__, {}
    else:
        cls_name, overrides = SCHEDULERS[canonical_name(name)]
        cls = getattr(diffusers, cls_name, None)
        if cls is None:
            raise InvalidRequest(f"scheduler {cls_name} is not available in this diffusers version")
    try:
        return cls.from_config(base.config, **overrides)
    except ImportError as exc:  # diffusers' placeholders for schedulers with optional deps
        message = " ".join(str(exc).split())
        raise InvalidRequest(f"scheduler {name or cls_name} needs a package that is not installed: {message}",
                             {"scheduler": name or cls_name}) from None
