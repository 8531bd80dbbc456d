"""Stage names -> Stage classes: the built-ins, a custom class by its import path, and names that are no stage."""

from __future__ import annotations

import pytest

from stream_ad.pipeline.stages.decide import Decide
from stream_ad.pipeline.stages.registry import stage_class
from tests.pipeline.stage_plugins import Sampler


def test_builtin_and_custom_names_give_their_classes() -> None:
    assert stage_class("decide") is Decide
    assert stage_class("tests.pipeline.stage_plugins:Sampler") is Sampler


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        ("tests.pipeline.stage_plugins:Nothing", ValueError, "cannot import tests.pipeline.stage_plugins:Nothing"),
        ("no_such_package.mod:Stage", ValueError, "cannot import no_such_package.mod:Stage"),
        ("stream_ad.frames:Frame", TypeError, "stream_ad.frames:Frame is not a Stage class"),
    ],
)
def test_names_that_are_no_stage_are_refused(name: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        stage_class(name)


def test_every_builtin_name_but_the_source_has_a_class() -> None:
    from stream_ad.pipeline.stages.registry import BUILTIN_CLASSES
    from stream_ad.settings import BUILTIN_STAGES

    assert {"source", *BUILTIN_CLASSES} == set(BUILTIN_STAGES)
