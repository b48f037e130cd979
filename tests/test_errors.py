"""The error tree's structured errors: a parameter error says module, parameter and problem."""

from __future__ import annotations

import pytest

from modules.registry import get_module
from protocol.errors import ParamError


def test_a_param_error_carries_its_parts_and_builds_its_message_once() -> None:
    err = ParamError("must be an absolute path", param="paths[0]").of("file")
    assert (err.module, err.param, err.problem) == ("file", "paths[0]", "must be an absolute path")
    assert str(err) == "file: paths[0]: must be an absolute path"
    assert err.in_params == "paths[0]: must be an absolute path"
    assert err.of("other") is err  # said of its module once, whoever passes it on
    assert str(ParamError("paths: expected an array")) == "paths: expected an array"


def test_module_validation_names_the_module_once() -> None:
    module = get_module("file")
    assert module is not None
    with pytest.raises(ParamError) as caught:
        module.validate({"paths": ["relative"], "name": ["x"]})
    assert caught.value.module == "file"
    assert str(caught.value).startswith("file: paths[0]: ") and "file: file:" not in str(
        caught.value
    )
