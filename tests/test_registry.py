"""Each plug-in registry (registry.py) against what is built from it: the config unions, the CLI's
choices and the generated references list exactly the registered names, and every entry imports."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from edge_inspector.backends import BACKENDS, BackendError
from edge_inspector.config import ModelConfig, SourceConfig
from edge_inspector.models import DETECTORS, DetectorError
from edge_inspector.publishers import PUBLISHERS, PublisherConfig, PublisherError
from edge_inspector.registry import Registry
from edge_inspector.sources import SOURCES, SourceError

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "reference"


def union_tags(annotated: object) -> list[str]:
    """The ``type`` Literal of every member of a discriminated config union."""
    union = typing.get_args(annotated)[0]
    return [typing.get_args(member.model_fields["type"].annotation)[0] for member in typing.get_args(union)]


@pytest.mark.parametrize("registry,union", [(SOURCES, SourceConfig), (PUBLISHERS, PublisherConfig)])
def test_config_union_and_registry_name_the_same_types(registry: Registry, union: object) -> None:
    assert sorted(registry.names()) == sorted(union_tags(union))


@pytest.mark.parametrize("registry", [SOURCES, PUBLISHERS], ids=["sources", "publishers"])
def test_every_runtime_entry_imports_without_its_optional_library(registry: Registry) -> None:
    """Aravis (genicam) and asyncua (opcua) are imported when a source or server starts, not at load."""
    for name in registry.names():
        assert isinstance(registry.load(name), type), name


def test_every_detector_entry_points_at_a_class() -> None:
    pytest.importorskip("torch")
    for name in DETECTORS.names():
        assert DETECTORS.load(name).__name__.endswith("Detector"), name


def test_backend_registry_and_config_literal_agree_and_entries_import() -> None:
    """The backend modules import without OpenVINO or TensorRT (each imports its library when built)."""
    assert BACKENDS.names() == list(typing.get_args(ModelConfig.model_fields["backend"].annotation))
    for name in BACKENDS.names():
        assert BACKENDS.load(name).name == name


@pytest.mark.parametrize("registry,error", [(SOURCES, SourceError), (PUBLISHERS, PublisherError),
                                            (DETECTORS, DetectorError), (BACKENDS, BackendError)])
def test_unknown_name_is_the_packages_error_listing_the_known_ones(registry: Registry, error: type) -> None:
    with pytest.raises(error, match=f"unknown {registry.what} 'nope'; expected one of {registry.names()[0]}"):
        registry.load("nope")


def test_cli_choices_and_generated_references_come_from_the_registries() -> None:
    from edge_inspector.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._subparsers._group_actions if a.dest == "command")  # noqa: SLF001
    model = next(a for a in sub.choices["train"]._actions if a.dest == "model")  # noqa: SLF001
    assert list(model.choices) == DETECTORS.names()
    cli_md = (REFERENCE / "cli.md").read_text()
    assert "{" + ",".join(DETECTORS.names()) + "}" in cli_md  # train --model, as argparse prints it
    config_md = (REFERENCE / "configuration.md").read_text()
    for name in SOURCES.names() + PUBLISHERS.names():
        assert f'`"{name}"`' in config_md, name
