"""Preview images checked in process: good PNG/JPEG/WEBP accepted with their A1111 infotext and
a thumbnail; every hostile image refused with its code and a message that names the problem."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from pseudoword.registry.core.errors import PseudowordError
from pseudoword.registry.service.previews import check_image, check_images
from pseudoword.registry.service.settings import Settings
from tests.images import HOSTILE, INFOTEXT, jpeg, png, webp

SETTINGS = Settings()


@pytest.mark.parametrize(("make", "fmt"), [(png, "png"), (jpeg, "jpeg"), (webp, "webp")])
def test_good_images_pass_with_their_thumbnail(make, fmt) -> None:
    checked = check_image(make(), SETTINGS)
    assert checked.format == fmt
    with Image.open(io.BytesIO(checked.thumbnail)) as thumb:
        assert thumb.format == "WEBP" and max(thumb.size) <= SETTINGS.preview_thumbnail_side


def test_a1111_infotext_is_read_from_png_and_jpeg() -> None:
    assert check_image(png(), SETTINGS).parameters == INFOTEXT
    assert check_image(jpeg(), SETTINGS).parameters == INFOTEXT
    assert check_image(png(parameters=None), SETTINGS).parameters == ""


def test_thumbnail_is_at_most_the_thumbnail_side() -> None:
    checked = check_image(png(size=(1200, 600)), SETTINGS)
    with Image.open(io.BytesIO(checked.thumbnail)) as thumb:
        assert thumb.size == (512, 256)
    assert (checked.width, checked.height) == (1200, 600)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_images_are_refused_with_a_clear_error(name: str) -> None:
    make, code, words = HOSTILE[name]
    with pytest.raises(PseudowordError) as caught:
        check_image(make(), SETTINGS)
    assert caught.value.code == code
    assert words in caught.value.message, caught.value.message


def test_too_many_bytes_and_too_many_images() -> None:
    with pytest.raises(PseudowordError, match="at most 1000 allowed") as caught:
        check_image(png(), Settings(max_preview_bytes=1000))
    assert caught.value.code == "too_large"
    with pytest.raises(PseudowordError, match="at most 4 per request"):
        check_images([(None, png())] * 5, SETTINGS)
