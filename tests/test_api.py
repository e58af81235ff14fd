"""The public names promised in shared/API.md exist, are exported and are documented."""

import inspect
import pathlib
import re

import pytest

import composable_ebm as ebm

API_MD = pathlib.Path(__file__).parents[2] / "shared" / "API.md"


def _sections(text: str) -> list[tuple[str, str]]:
    """(header, body) for every ``## `` section of a Markdown file."""
    parts = re.split(r"^## +(.*)$", text, flags=re.MULTILINE)
    return list(zip(parts[1::2], parts[2::2], strict=True))


def _core_names() -> list[str]:
    if not API_MD.exists():
        pytest.skip(f"{API_MD} is not present")
    names: set[str] = set()
    for header, body in _sections(API_MD.read_text(encoding="utf-8")):
        if "planned" in header.lower() or "issue: core" not in header.lower():
            continue
        names.update(re.findall(r"\bebm\.([A-Za-z_]\w*)", body))
    return sorted(names)


def test_api_md_core_sections_are_found():
    names = _core_names()
    # a sanity check on the parser: the three core sections name these
    for expected in ("Gaussian", "logsumexp", "potential_fn", "sample"):
        assert expected in names, expected
    # and nothing from planned sections or from the training issue leaks in
    for not_core in ("langevin", "log_partition", "predict", "fit", "NCE"):
        assert not_core not in names, not_core


def test_every_core_name_is_exported():
    names = _core_names()
    missing = [n for n in names if n not in ebm.__all__]
    assert not missing, f"names in API.md (issue: core) missing from __all__: {missing}"
    absent = [n for n in names if not hasattr(ebm, n)]
    assert not absent, f"names in __all__ that are not attributes: {absent}"


def test_all_is_sorted_unique_and_importable():
    assert len(set(ebm.__all__)) == len(ebm.__all__)
    for name in ebm.__all__:
        assert getattr(ebm, name) is not None, name


@pytest.mark.parametrize("name", sorted(ebm.__all__))
def test_public_name_has_docstring_with_example(name):
    obj = getattr(ebm, name)
    doc = inspect.getdoc(obj) or ""
    assert doc.strip(), f"ebm.{name} has no docstring"
    assert ">>>" in doc, f"ebm.{name}'s docstring has no runnable example (>>>)"


@pytest.mark.parametrize("method", ["batch", "score", "condition", "rename", "named"])
def test_energy_methods_have_examples(method):
    doc = inspect.getdoc(getattr(ebm.Energy, method)) or ""
    assert ">>>" in doc, f"Energy.{method} has no example"


def test_energy_classes_are_energies():
    for name in ("Gaussian", "Confinement", "FromDistribution", "NeuralEnergy"):
        assert issubclass(getattr(ebm, name), ebm.Energy), name
