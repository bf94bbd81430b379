"""Prompts the new word is trained in: the paper's idea (many short neutral sentences around the
word, one set for objects and one for styles), written here in our own words.

A caption file replaces the template's neutral context: where it names the trigger, ``[name]``
or ``{}``, the word goes there; otherwise a template with the word comes first and the caption
follows (A1111's ``[name], [filewords]``).
"""

from __future__ import annotations

import re

OBJECT_TEMPLATES: tuple[str, ...] = (
    "a photo of {}",
    "a picture of {}",
    "an image showing {}",
    "a close-up photo of {}",
    "a snapshot of the {}",
    "a clear photo of a {}",
    "a dim photo of the {}",
    "a bright picture of the {}",
    "a cropped photo of a {}",
    "a good picture of the {}",
    "a small {} in a photo",
    "a large {} in a picture",
    "there is a {} in this photo",
    "one {} photographed",
    "a rendering of the {}",
    "a nice photo of my {}",
)

STYLE_TEMPLATES: tuple[str, ...] = (
    "a painting in the style of {}",
    "a picture in the style of {}",
    "an artwork in the {} style",
    "an illustration in the style of {}",
    "a drawing in the style of {}",
    "a small painting in the style of {}",
    "a large artwork in the style of {}",
    "a landscape in the style of {}",
    "a portrait in the style of {}",
    "a still life in the style of {}",
    "a sketch made in the {} style",
    "a rendering in the style of {}",
    "a good picture in the {} style",
    "a cropped painting in the style of {}",
    "art made in the style of {}",
    "a colourful picture in the style of {}",
)

TEMPLATES = {"object": OBJECT_TEMPLATES, "style": STYLE_TEMPLATES}
_MARKERS = re.compile(r"\[name\]|\{\}")


def prompt_for(kind: str, template: int, trigger: str, caption: str | None) -> str:
    """The training prompt for one image: template number ``template`` of ``kind`` (taken
    modulo their count), or the image's caption."""
    base = TEMPLATES[kind][template % len(TEMPLATES[kind])].format(trigger)
    if caption is None:
        return base
    if _MARKERS.search(caption):
        return _MARKERS.sub(lambda _: trigger, caption)
    if re.search(rf"(?<!\w){re.escape(trigger)}(?!\w)", caption, re.IGNORECASE):
        return caption
    return f"{base}, {caption}"
