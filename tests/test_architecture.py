"""The import graph runs one way: every module imports only from layers below its own (or from its own
package). A new package must be given a layer here; a misplaced definition shows up as an upward arrow."""

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src"

# Lowest first. A module belongs to the longest entry that prefixes its dotted name ("videoscene" itself: the
# package's __init__ only, so that a new top-level module must be placed).
LAYERS = [
    ["videoscene", "videoscene.errors"],
    ["videoscene.config_json", "videoscene.io_utils"],
    ["videoscene.image_io", "videoscene.arguments", "videoscene.geometry.rotations"],  # rotations: pure maths
    ["videoscene.types"],
    ["videoscene.geometry"],
    ["videoscene.metrics"],
    ["videoscene.data", "videoscene.gaussians"],
    ["videoscene.training"],
    ["videoscene.reconstruct"],
    ["videoscene.prior"],
    ["videoscene.video"],
    ["videoscene.policy"],
    ["videoscene.distill"],
    ["videoscene.outputs"],
    ["videoscene.pipeline"],
    ["videoscene.evaluation", "videoscene.generate", "videoscene.importers"],
    ["videoscene.demo"],
    ["videoscene.app"],
    ["videoscene.cli"],
]


def owner(module: str) -> tuple[int, str]:
    """(layer, entry) of a dotted module name."""
    matches = [
        (len(entry), level, entry)
        for level, entries in enumerate(LAYERS)
        for entry in entries
        if module == entry or (entry != "videoscene" and module.startswith(entry + "."))
    ]
    assert matches, f"{module} has no layer in tests/test_architecture.py"
    _, level, entry = max(matches)
    return level, entry


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted((SOURCE / "videoscene").rglob("*.py")):
        parts = path.relative_to(SOURCE).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path) -> set[str]:
    """Every videoscene module a file imports, at the top or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "videoscene":
            for alias in node.names:  # `from videoscene.data import textures` imports a module
                names.add(
                    f"{node.module}.{alias.name}"
                    if f"{node.module}.{alias.name}" in modules()
                    else node.module
                )
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.split(".")[0] == "videoscene")
    return names


def test_every_module_has_a_layer():
    for module in modules():
        owner(module)


@pytest.mark.parametrize("module", sorted(modules()))
def test_imports_point_down(module):
    level, entry = owner(module)
    upward = []
    for imported in imports(modules()[module]):
        their_level, their_entry = owner(imported)
        if their_entry != entry and their_level >= level:
            upward.append(f"{imported} (layer {their_level}: {their_entry})")
    assert not upward, f"{module} (layer {level}: {entry}) imports from its own layer or above: {upward}"


def test_the_check_sees_an_upward_import(tmp_path):
    """The check itself: a geometry module importing the pipeline would be caught."""
    fake = tmp_path / "fake.py"
    fake.write_text("from videoscene.pipeline import VideoScenePipeline\n")
    assert owner(next(iter(imports(fake))))[0] > owner("videoscene.geometry.cameras")[0]
