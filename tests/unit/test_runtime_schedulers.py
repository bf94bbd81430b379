"""The scheduler table: every name (Runware's for SD 1.5 and SDXL, A1111's, diffusers' class
names, Civitai's spellings) builds the scheduler it names, and every distinct scheduler runs two
steps on the small pipelines; unsuitable and unknown names are refused before any work."""

from __future__ import annotations

from typing import Any

import pytest

from pseudoword.registry.core.errors import InvalidRequest
from pseudoword.runtime import encode
from pseudoword.runtime.generation import Job, denoise
from pseudoword.runtime.schedulers import (
    DEFAULT,
    SCHEDULERS,
    UNSUITABLE,
    canonical_name,
    check_available,
    display_name,
    make_scheduler,
)

#: One name per distinct (class, overrides): what actually runs.
DISTINCT = list({repr(target): name for name, target in reversed(SCHEDULERS.items())}.values())[::-1]
#: One name per class, for the SDXL runs.
CLASSES = list({(target or ("", {}))[0]: name for name, target in reversed(SCHEDULERS.items())}.values())[::-1]


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_every_name_builds_what_it_names(sd1: Any, sdxl: Any, name: str) -> None:
    for pipe in (sd1, sdxl):
        scheduler = make_scheduler(name, pipe.scheduler, seeds=[1])
        target = SCHEDULERS[name]
        cls, overrides = target if target is not None else (type(pipe.scheduler).__name__, {})
        assert type(scheduler).__name__ == cls
        assert all(scheduler.config[key] == value for key, value in overrides.items())
        assert scheduler is not pipe.scheduler
        check_available(name)
        scheduler.set_timesteps(2)
        assert len(scheduler.timesteps) >= 2


def test_names_are_read_as_people_write_them() -> None:
    assert canonical_name("dpmpp_2m_karras") == canonical_name("DPM++ 2M Karras") == "DPM++ 2M Karras"
    assert canonical_name("DPM2MKarras") == "DPM2MKarras"  # Civitai's spelling, the same scheduler
    assert SCHEDULERS["DPM2MKarras"] == SCHEDULERS["DPM++ 2M Karras"]
    assert canonical_name("euler A") == "Euler a" and canonical_name("default") == DEFAULT
    assert display_name("EulerAncestralDiscreteScheduler") == "Euler a"  # how A1111's infotext names it
    assert display_name("kdpm2 ancestral") == "DPM2 a" and display_name("DPMSolverMultistepScheduler") == "DPM++ 2M"
    assert display_name(None) == DEFAULT


def test_the_issues_names_are_all_known() -> None:
    for name in ("Default", "EulerAncestralDiscreteScheduler", "DPMSolverMultistepScheduler", "DPM++ 3M Karras",
                 "Euler Karras", "Euler Beta", "Euler Exponential", "DPM++ SDE Beta", "KDPM2", "LMS", "DPM++ SDE"):
        assert canonical_name(name) in SCHEDULERS


@pytest.mark.parametrize("name", sorted(UNSUITABLE))
def test_unsuitable_names_are_refused_with_the_reason(name: str) -> None:
    with pytest.raises(InvalidRequest, match=UNSUITABLE[name].split(";")[0].split("(")[0]):
        canonical_name(name)


def test_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(InvalidRequest, match="unknown scheduler 'Fancy 3000'; known: Default, DPM\\+\\+ 2M,") as info:
        canonical_name("Fancy 3000")
    assert info.value.detail["known"] == list(SCHEDULERS)


def test_a_missing_extra_is_refused_before_any_work(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchsde" else real(name, *a))
    with pytest.raises(InvalidRequest, match="DPM\\+\\+ SDE Karras needs torchsde"):
        check_available("DPM++ SDE Karras")
    check_available("Euler")


@pytest.fixture(scope="module")
def conditioning(sd1: Any, sdxl: Any) -> dict[int, Any]:
    return {id(sd1): encode(sd1, "a cat", ""), id(sdxl): encode(sdxl, "a cat", "")}


def _two_steps(pipe: Any, kwargs: Any, name: str) -> None:
    [image] = denoise(pipe, [Job(kwargs, 3)], width=32, height=32, steps=2, cfg_scale=1.0,
                      scheduler=None if name == DEFAULT else name)
    assert image.size == (32, 32)
    assert len(set(image.tobytes())) > 1  # something was drawn


@pytest.mark.parametrize("name", DISTINCT)
def test_each_scheduler_runs_two_steps_on_sd1(sd1: Any, conditioning: dict[int, Any], name: str) -> None:
    _two_steps(sd1, conditioning[id(sd1)], name)


@pytest.mark.parametrize("name", CLASSES)
def test_each_scheduler_class_runs_two_steps_on_sdxl(sdxl: Any, conditioning: dict[int, Any], name: str) -> None:
    _two_steps(sdxl, conditioning[id(sdxl)], name)
