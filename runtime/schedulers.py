"""Scheduler names as people write them -> diffusers schedulers: one table.

The names are Runware's for SD 1.5 and SDXL (its "Schedulers" page: ``Default``, the
diffusers class names, friendly names such as ``DPM++ 3M Karras`` or ``Euler Beta``), which
include AUTOMATIC1111's sampler names, plus the spellings Civitai's API uses. Each maps to a
diffusers class and the config overrides that make it that sampler, following diffusers' own
A1111 correspondence ("Schedulers" overview): ``Karras`` = ``use_karras_sigmas``, ``Beta`` =
``use_beta_sigmas``, ``Exponential`` = ``use_exponential_sigmas``, ``2M``/``3M`` = the solver
order, ``SDE`` = ``algorithm_type="sde-dpmsolver++"`` (``DPM++ SDE`` itself is k-diffusion's
``dpmpp_sde``, diffusers' ``DPMSolverSDEScheduler``). ``Default`` is the pipeline's own.

Names are matched loosely: case, spaces, ``+`` and punctuation do not matter, so
``DPM++ 2M Karras``, ``dpmpp_2m_karras`` and Civitai's ``DPM2MKarras`` are the same. The first
name of the table for a (class, overrides) pair is how images name it (A1111's infotext).

Some names on Runware's list are schedulers diffusers has but that cannot make an image from a
prompt on these models (inverse schedulers, variance-exploding or flow-matching ones); they are
refused with the reason, like an unknown name, before any work is done.

A new scheduler object is made for every request from the pipeline's scheduler config:
schedulers keep per-run state, so a shared one must never be reconfigured. Schedulers that draw
their noise from torch's global random state unless told otherwise (``DPMSolverSDEScheduler``'s
Brownian tree) get the request's seeds, so an image depends only on its request.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
from collections.abc import Sequence
from typing import Any

from pseudoword.registry.core.errors import InvalidRequest

DEFAULT = "Default"
_K = {"use_karras_sigmas": True}
_BETA = {"use_beta_sigmas": True}
_EXP = {"use_exponential_sigmas": True}
_SDE = {"algorithm_type": "sde-dpmsolver++"}
_ORDER3 = {"solver_order": 3}
_PLMS = {"skip_prk_steps": True}  # as SD's own PNDM config: PLMS, no Runge-Kutta warm-up

#: name -> (diffusers class name, config overrides); None for the pipeline's own scheduler.
SCHEDULERS: dict[str, tuple[str, dict[str, Any]] | None] = {
    DEFAULT: None,
    # DPM++ family (DPMSolverMultistepScheduler: DPM-Solver++, multistep)
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", _K),
    "DPM++ 2M Beta": ("DPMSolverMultistepScheduler", _BETA),
    "DPM++ 2M Exponential": ("DPMSolverMultistepScheduler", _EXP),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", _SDE),
    "DPM++ 2M SDE Karras": ("DPMSolverMultistepScheduler", {**_SDE, **_K}),
    "DPM++ 3M": ("DPMSolverMultistepScheduler", _ORDER3),
    "DPM++ 3M Karras": ("DPMSolverMultistepScheduler", {**_ORDER3, **_K}),
    "DPM++ 3M SDE": ("DPMSolverMultistepScheduler", {**_ORDER3, **_SDE}),
    "DPM++ 3M SDE Karras": ("DPMSolverMultistepScheduler", {**_ORDER3, **_SDE, **_K}),
    "DPM++": ("DPMSolverMultistepScheduler", {}),
    "DPM++ Karras": ("DPMSolverMultistepScheduler", _K),
    "DPM++ Beta": ("DPMSolverMultistepScheduler", _BETA),
    "DPM++ Exponential": ("DPMSolverMultistepScheduler", _EXP),
    "DPMSolverMultistepScheduler": ("DPMSolverMultistepScheduler", {}),
    "DPM-Solver Multi-step": ("DPMSolverMultistepScheduler", {}),
    "DPM2M": ("DPMSolverMultistepScheduler", {}),  # Civitai's API drops the "++"
    "DPM2MKarras": ("DPMSolverMultistepScheduler", _K),
    # DPM++ SDE (k-diffusion's dpmpp_sde: DPMSolverSDEScheduler, needs torchsde)
    "DPM++ SDE": ("DPMSolverSDEScheduler", {}),
    "DPM++ SDE Karras": ("DPMSolverSDEScheduler", _K),
    "DPM++ SDE Beta": ("DPMSolverSDEScheduler", _BETA),
    "DPM++ SDE Exponential": ("DPMSolverSDEScheduler", _EXP),
    "DPMSolverSDEScheduler": ("DPMSolverSDEScheduler", {}),
    "DPM-Solver SDE": ("DPMSolverSDEScheduler", {}),
    "DPMSDE": ("DPMSolverSDEScheduler", {}),
    "DPMSDEKarras": ("DPMSolverSDEScheduler", _K),
    # single-step DPM-Solver++
    "DPM++ 2S a": ("DPMSolverSinglestepScheduler", {}),
    "DPM++ 2S a Karras": ("DPMSolverSinglestepScheduler", _K),
    "DPMSolverSinglestepScheduler": ("DPMSolverSinglestepScheduler", {}),
    "DPM-Solver Single-step": ("DPMSolverSinglestepScheduler", {}),
    # DPM2 (k-diffusion's KDPM2)
    "DPM2": ("KDPM2DiscreteScheduler", {}),
    "DPM2 Karras": ("KDPM2DiscreteScheduler", _K),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {}),
    "DPM2 a Karras": ("KDPM2AncestralDiscreteScheduler", _K),
    "KDPM2": ("KDPM2DiscreteScheduler", {}),
    "KDPM2 Ancestral": ("KDPM2AncestralDiscreteScheduler", {}),
    "KDPM2DiscreteScheduler": ("KDPM2DiscreteScheduler", {}),
    "KDPM2AncestralDiscreteScheduler": ("KDPM2AncestralDiscreteScheduler", {}),
    "DPM2Ancestral": ("KDPM2AncestralDiscreteScheduler", {}),
    # Euler
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler Karras": ("EulerDiscreteScheduler", _K),
    "Euler Beta": ("EulerDiscreteScheduler", _BETA),
    "Euler Exponential": ("EulerDiscreteScheduler", _EXP),
    "EulerDiscreteScheduler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Euler Ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "EulerAncestralDiscreteScheduler": ("EulerAncestralDiscreteScheduler", {}),
    # Heun
    "Heun": ("HeunDiscreteScheduler", {}),
    "Heun Karras": ("HeunDiscreteScheduler", _K),
    "Heun Beta": ("HeunDiscreteScheduler", _BETA),
    "Heun Exponential": ("HeunDiscreteScheduler", _EXP),
    "HeunDiscreteScheduler": ("HeunDiscreteScheduler", {}),
    # LMS (needs scipy)
    "LMS": ("LMSDiscreteScheduler", {}),
    "LMS Karras": ("LMSDiscreteScheduler", _K),
    "LMSDiscreteScheduler": ("LMSDiscreteScheduler", {}),
    # UniPC
    "UniPC": ("UniPCMultistepScheduler", {}),
    "UniPC Karras": ("UniPCMultistepScheduler", _K),
    "UniPC 2M": ("UniPCMultistepScheduler", {"solver_order": 2}),
    "UniPC 2M Karras": ("UniPCMultistepScheduler", {"solver_order": 2, **_K}),
    "UniPC 3M": ("UniPCMultistepScheduler", _ORDER3),
    "UniPC 3M Karras": ("UniPCMultistepScheduler", {**_ORDER3, **_K}),
    "UniPCMultistepScheduler": ("UniPCMultistepScheduler", {}),
    # the rest
    "DDIM": ("DDIMScheduler", {}),
    "DDIMScheduler": ("DDIMScheduler", {}),
    "DDPM": ("DDPMScheduler", {}),
    "DDPMScheduler": ("DDPMScheduler", {}),
    "DEIS": ("DEISMultistepScheduler", {}),
    "DEIS Multistep": ("DEISMultistepScheduler", {}),
    "DEISMultistepScheduler": ("DEISMultistepScheduler", {}),
    "PNDM": ("PNDMScheduler", _PLMS),
    "PLMS": ("PNDMScheduler", _PLMS),
    "PNDMScheduler": ("PNDMScheduler", _PLMS),
    "LCM": ("LCMScheduler", {}),
    "LCMScheduler": ("LCMScheduler", {}),
    "TCD": ("TCDScheduler", {}),
    "TCDScheduler": ("TCDScheduler", {}),
    "EDM Euler": ("EDMEulerScheduler", {}),
    "EDMEulerScheduler": ("EDMEulerScheduler", {}),
    "EDM DPM++ 2M": ("EDMDPMSolverMultistepScheduler", {}),
    "EDMDPMSolverMultistepScheduler": ("EDMDPMSolverMultistepScheduler", {}),
}

#: Names on Runware's list that diffusers has but that make no image from a prompt here.
_INVERSE = "runs diffusion backwards (image to noise, for inversion); it does not make an image from a prompt"
UNSUITABLE: dict[str, str] = {
    "DDIM Inverse": _INVERSE,
    "DDIMInverseScheduler": _INVERSE,
    "DPM-Solver Multi-step Inverse": _INVERSE,
    "DPMSolverMultistepInverse": _INVERSE,
    "DPMSolverMultistepInverseScheduler": _INVERSE,
    "Karras VE": "is for variance-exploding models; SD 1.5 and SDXL are variance-preserving",
    "KarrasVeScheduler": "is for variance-exploding models; SD 1.5 and SDXL are variance-preserving",
    "FlowMatch Euler": "is for flow-matching models (FLUX, SD3), not SD 1.5 or SDXL",
    "FlowMatchEulerDiscreteScheduler": "is for flow-matching models (FLUX, SD3), not SD 1.5 or SDXL",
    "VQDiffusionScheduler": "is for VQ-Diffusion models, not Stable Diffusion",
}


def normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower().replace("++", "pp"))


def _index() -> dict[str, str]:
    def meaning(name: str) -> Any:
        return SCHEDULERS[name] if name in SCHEDULERS else UNSUITABLE[name]

    by_key: dict[str, str] = {}
    for name in [*SCHEDULERS, *UNSUITABLE]:
        key = normalise(name)
        other = by_key.get(key)
        if other is not None and meaning(other) != meaning(name):
            raise AssertionError(f"scheduler names {other!r} and {name!r} read the same but differ")
        by_key.setdefault(key, name)
    return by_key


_BY_KEY = _index()


def canonical_name(name: str) -> str:
    """The table's name for ``name``, or InvalidRequest listing the known ones."""
    found = _BY_KEY.get(normalise(name))
    if found in UNSUITABLE:
        raise InvalidRequest(f"scheduler {name!r} {UNSUITABLE[found]}; choose another, e.g. Default, "
                             "DPM++ 2M Karras, Euler a", {"scheduler": name, "reason": UNSUITABLE[found]})
    if found is None:
        raise InvalidRequest(
            f"unknown scheduler {name!r}; known: {', '.join(SCHEDULERS)}",
            {"scheduler": name, "known": list(SCHEDULERS)},
        )
    return found


def display_name(name: str | None, base: Any = None) -> str:
    """How an image names the sampler (A1111's infotext): the table's first name for the same
    class and overrides; for ``Default``/None, the first name for ``base``'s class."""
    target = SCHEDULERS.get(canonical_name(name)) if name is not None else None
    if target is None:
        if base is None:
            return DEFAULT
        target = (type(base).__name__, {})
    for candidate, value in SCHEDULERS.items():
        if value == target:
            return candidate
    return target[0]


def make_scheduler(name: str | None, base: Any, *, seeds: Sequence[int] | None = None) -> Any:
    """A fresh scheduler for one batch: ``name``'s class (or the class of ``base``, the
    pipeline's scheduler, for ``Default``/None) configured from ``base``'s config; a scheduler
    with its own noise source is seeded with ``seeds`` (one per image)."""
    import diffusers

    target = SCHEDULERS[canonical_name(name)] if name is not None else None
    cls: Any
    overrides: dict[str, Any]
    if target is None:
        cls, cls_name, overrides = type(base), type(base).__name__, {}
    else:
        cls_name, overrides = target
        cls = getattr(diffusers, cls_name, None)
        if cls is None:
            raise InvalidRequest(f"scheduler {cls_name} is not available in diffusers {diffusers.__version__}")
    overrides = dict(overrides)
    if seeds is not None and "noise_sampler_seed" in inspect.signature(cls.__init__).parameters:
        overrides["noise_sampler_seed"] = list(seeds)
    try:
        return cls.from_config(base.config, **overrides)
    except ImportError as exc:  # diffusers' placeholders for schedulers with optional deps
        message = " ".join(str(exc).split())
        raise InvalidRequest(f"scheduler {name or cls_name} needs a package that is not installed: {message}",
                             {"scheduler": name or cls_name}) from None


#: What a scheduler (class, or config override) needs beyond diffusers.
_NEEDS = {"LMSDiscreteScheduler": "scipy", "use_beta_sigmas": "scipy", "DPMSolverSDEScheduler": "torchsde"}


def check_available(name: str | None) -> None:
    """Refuse, before any work, a scheduler whose extra package is missing here (both are in
    the ``runtime`` extra; this catches an install without them)."""
    target = SCHEDULERS[canonical_name(name)] if name is not None else None
    if target is None:
        return
    for what in [target[0], *target[1]]:
        module = _NEEDS.get(what)
        if module is not None and importlib.util.find_spec(module) is None:
            raise InvalidRequest(f"scheduler {name} needs {module}, which is not installed "
                                 "(pip install 'pseudoword[runtime]')", {"scheduler": name, "missing": module})
