"""Platform components: one of each per platform, built once, defined by the wiring, no silent
fallback (issue #15 item 4)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ca.authority import AUTHORITY, SUBJECT_DIRECTORY, authority_for
from ca.directory import InMemoryDirectory
from govtrust.config import Settings
from govtrust.platform import Component, ComponentMissing, Components, open_platform
from govtrust.server.wiring import open_wired
from idp.ca_directory import RegistryDirectory
from tests.unchanged import unchanged


def test_a_component_is_built_once_even_when_asked_at_once() -> None:
    components = Components()
    thing: Component[list[int]] = Component("a thing")
    builds: list[int] = []
    gate = threading.Barrier(4)

    def build() -> list[int]:
        builds.append(1)
        return [len(builds)]

    got: list[list[int]] = []

    def ask() -> None:
        gate.wait()
        got.append(components.get(thing, build))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert builds == [1] and all(g is got[0] for g in got)
    assert components.built(thing) is got[0]
    # a definition wins over the owner's default and replaces what was built
    components.define(thing, lambda: [99])
    assert components.get(thing, build) == [99] and builds == [1]
    components.put(thing, [7])
    assert components.get(thing) == [7]
    with pytest.raises(ComponentMissing, match="nothing provides another"):
        components.get(Component[int]("another"))


def test_a_ca_without_a_subject_directory_refuses_and_creates_nothing(tmp_path: Path) -> None:
    platform = open_platform(Settings(data_dir=tmp_path / "data"))
    try:
        with (
            unchanged(platform.db, platform.keystore),
            pytest.raises(ComponentMissing, match="the CA's subject directory"),
        ):
            authority_for(platform)
        assert platform.components.built(AUTHORITY) is None
        # the wiring's choice, given explicitly, is what the CA checks subjects against
        directory = InMemoryDirectory()
        platform.components.define(SUBJECT_DIRECTORY, lambda: directory)
        authority = authority_for(platform)
        assert authority_for(platform) is authority
        assert authority.ctx.directory is directory
    finally:
        platform.close()


def test_the_wired_platform_checks_subjects_against_the_registry(tmp_path: Path) -> None:
    first = open_wired(Settings(data_dir=tmp_path / "data"))
    second = open_wired(Settings(data_dir=tmp_path / "data"))
    try:
        ca = authority_for(first)
        assert isinstance(ca.ctx.directory, RegistryDirectory)
        assert authority_for(second) is not ca  # one per platform, never shared
    finally:
        second.close()
        first.close()
