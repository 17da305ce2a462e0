"""Prefect's `.map()` rules as a table (`mapping.split_mapped`): which arguments are zipped,
which pass whole to every child. Pure: no flow, no runner."""

from __future__ import annotations

import inspect
import io

import numpy as np
import pytest

from procflow import allow_failure, quote, unmapped
from procflow.exceptions import MappingLengthMismatch, MappingMissingIterable
from procflow.mapping import children, gather_variadic, split_mapped
from procflow.states import Completed


def one(x, y=None):
    pass


SIGNATURE = inspect.signature(one)
ITEMS = [1, 2]


@pytest.mark.parametrize("given, zipped", [
    ([1, 2], [1, 2]),
    ((1, 2), [1, 2]),
    (range(2), [0, 1]),
    ({"a": 1, "b": 2}, ["a", "b"]),  # a dict maps over its keys
    ((n for n in (5, 6)), [5, 6]),  # a generator, consumed once
    (np.array([7, 8]), [7, 8]),
    (Completed([3, 4]), [3, 4]),  # a state maps over its result, as in Prefect
], ids=["list", "tuple", "range", "dict", "generator", "array", "state"])
def test_iterables_are_zipped_item_by_item(given, zipped):
    iterables, statics = split_mapped("t", SIGNATURE, {"x": given, "y": ITEMS})
    assert [int(v) if isinstance(v, np.integer) else v for v in iterables["x"]] == zipped
    assert statics == {}


@pytest.mark.parametrize("given, whole", [
    ("ab", "ab"),  # strings, bytes and files are not iterated
    (b"ab", b"ab"),
    (5, 5),
    (None, None),
    (unmapped([1, 2, 3]), [1, 2, 3]),  # unmapped: the whole list to every child
], ids=["str", "bytes", "int", "None", "unmapped"])
def test_scalars_strings_and_unmapped_pass_whole_to_every_child(given, whole):
    iterables, statics = split_mapped("t", SIGNATURE, {"x": ITEMS, "y": given})
    assert statics == {"y": whole} and list(iterables) == ["x"]


def test_a_file_passes_whole():
    handle = io.StringIO("line\n")
    _, statics = split_mapped("t", SIGNATURE, {"x": ITEMS, "y": handle})
    assert statics["y"] is handle


@pytest.mark.parametrize("wrapper", [allow_failure, quote])
def test_an_annotation_around_an_iterable_maps_its_items_each_wrapped_again(wrapper):
    iterables, _ = split_mapped("t", SIGNATURE, {"x": wrapper([1, 2]), "y": ITEMS})
    assert [type(item) for item in iterables["x"]] == [wrapper, wrapper]
    assert [item.value for item in iterables["x"]] == [1, 2]


def test_an_annotation_around_unmapped_or_a_scalar_passes_whole_still_wrapped():
    _, statics = split_mapped("t", SIGNATURE, {"x": ITEMS, "y": allow_failure(unmapped([9]))})
    assert type(statics["y"]) is allow_failure and statics["y"].value == [9]


def test_lengths_that_differ_are_refused_naming_each():
    with pytest.raises(MappingLengthMismatch, match=r"task 't': .*Got lengths: \{'x': 2, 'y': 3\}"):
        split_mapped("t", SIGNATURE, {"x": [1, 2], "y": [1, 2, 3]})


def test_no_iterable_at_all_is_refused_with_the_way_out():
    with pytest.raises(MappingMissingIterable, match=r"task 't': .*no iterable parameters.*unmapped\(\)"):
        split_mapped("t", SIGNATURE, {"x": 1, "y": "s"})


def test_each_item_of_star_args_and_star_star_kwargs_is_a_parameter_of_its_own():
    def variadic(*numbers, **named):
        pass

    signature = inspect.signature(variadic)
    iterables, statics = split_mapped("t", signature, {"numbers": ([1, 2], 10), "named": {"k": [3, 4], "s": "x"}})
    assert iterables == {("numbers", 0): [1, 2], ("named", "k"): [3, 4]}
    assert statics == {("numbers", 1): 10, ("named", "s"): "x"}
    child = {**statics, **{key: items[1] for key, items in iterables.items()}}
    assert gather_variadic(signature, child) == {"numbers": (2, 10), "named": {"k": 4, "s": "x"}}


def test_children_get_their_items_and_the_statics_by_keyword_or_bound_for_variadics():
    iterables, statics = split_mapped("t", SIGNATURE, {"x": [1, 2], "y": unmapped("s")})
    assert list(children(SIGNATURE, iterables, statics)) == [((), {"x": 1, "y": "s"}), ((), {"x": 2, "y": "s"})]

    def variadic(first, *rest):
        pass

    signature = inspect.signature(variadic)
    iterables, statics = split_mapped("t", signature, {"first": [1, 2], "rest": ([3, 4], 9)})
    assert list(children(signature, iterables, statics)) == [((1, 3, 9), {}), ((2, 4, 9), {})]
