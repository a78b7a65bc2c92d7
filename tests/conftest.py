"""Shared fixtures: namespaces that are always removed, root check."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from tests.nsutil import Netns, create_netns


@pytest.fixture
def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")


@pytest.fixture
def make_netns(need_root: None) -> Iterator[Callable[[str], Netns]]:
    """Factory for namespaces deleted at teardown, also when the test fails."""
    made: list[Netns] = []

    def factory(prefix: str = "nvt") -> Netns:
        ns = create_netns(prefix)
        made.append(ns)
        return ns

    yield factory
    for ns in reversed(made):
        ns.delete()
