"""The one trigger rule (registry.core.triggers): the file's name, as A1111 and ComfyUI call an
embedding; the name stored inside the file kept as an alias."""

from __future__ import annotations

import pytest
import torch

from pseudoword.registry.core import Embedding, default_trigger, trigger_from_stem, triggers_for
from pseudoword.registry.core.errors import InvalidRequest
from pseudoword.registry.core.triggers import Triggers


def _emb(name: str | None) -> Embedding:
    return Embedding({"emb_params": torch.zeros(2, 768)}, "sd1", "a1111", name=name)


@pytest.mark.parametrize(
    ("filename", "stored", "expected"),
    [
        # the seeds' cases: A1111 users type the file's name, whatever the file stores
        ("badhandv4.pt", "badhandv3", Triggers("badhandv4", ("badhandv3",))),
        ("nartfixer.pt", "wer", Triggers("nartfixer", ("wer",))),
        ("negative_hand-neg.pt", "negative_hand", Triggers("negative_hand-neg", ("negative_hand",))),
        ("Stable_Yogis_Scenery_positives .safetensors", None, Triggers("Stable_Yogis_Scenery_positives")),
        # one prompt word: spaces and commas become '-', the name as written stays an alias
        ("Low_Quality2xx_ By_Stable_Yogi-neg.pt", "_EmbeddingMerge_temp",
         Triggers("Low_Quality2xx_-By_Stable_Yogi-neg", ("Low_Quality2xx_ By_Stable_Yogi-neg", "_EmbeddingMerge_temp"))),
        ("a, b  c.pt", None, Triggers("a-b-c", ("a, b  c",))),
        # the same name in another case is no alias; folders and dots in the name are kept right
        ("embeddings/sub/EasyNegative.safetensors", "easynegative", Triggers("EasyNegative")),
        ("C:\\models\\verybadimagenegative_v1.3.pt", None, Triggers("verybadimagenegative_v1.3")),
        # no usable file name: the stored name is the trigger
        (None, "bad-hands-5", Triggers("bad-hands-5")),
        (" ,.pt", "stored name", Triggers("stored-name", ("stored name",))),
    ],
)
def test_the_trigger_is_the_file_name_and_the_stored_name_an_alias(filename: str | None, stored: str | None,
                                                                   expected: Triggers) -> None:
    assert triggers_for(_emb(stored), filename) == expected
    assert default_trigger(_emb(stored), filename) == expected.trigger
    assert not any(ch.isspace() or ch == "," for ch in expected.trigger)


def test_a_file_with_neither_name_needs_a_trigger() -> None:
    with pytest.raises(InvalidRequest, match="give a trigger word"):
        triggers_for(_emb(None), None)
    with pytest.raises(InvalidRequest, match="give a trigger word"):
        triggers_for(_emb("  "), " , .pt")


@pytest.mark.parametrize(("stem", "word"), [("  two   spaces ", "two-spaces"), ("-neg", "-neg"), ("x" * 200, "x" * 128),
                                            (", lead, trail ,", "lead-trail")])
def test_trigger_from_stem_keeps_real_dashes_and_drops_separators(stem: str, word: str) -> None:
    assert trigger_from_stem(stem) == word
