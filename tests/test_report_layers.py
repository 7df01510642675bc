"""The package's import graph (benchmarks/import_graph.py): no cycle anywhere, and the report's top-layer
modules (tables, figures, paper, robustness, audit) import only its bottom layer (results, published, style)."""

from __future__ import annotations

import importlib.util

from workflow_helpers import REPO

_spec = importlib.util.spec_from_file_location("import_graph", REPO / "benchmarks" / "import_graph.py")
graph_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(graph_tool)


def test_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert graph_tool.cycles(graph) == [["a", "b", "c"]]
    assert graph_tool.cycles({"a": {"b"}, "b": set()}) == []


def test_package_has_no_import_cycle():
    graph = graph_tool.import_graph()
    assert "cmhash.report.figures" in graph and "cmhash.report.results" in graph["cmhash.report.figures"]
    assert graph_tool.cycles(graph) == []


def test_report_top_layer_imports_only_the_bottom_layer():
    graph = graph_tool.import_graph()
    assert graph_tool.layer_violations(graph) == []
    planted = {**graph, "cmhash.report.tables": graph["cmhash.report.tables"] | {"cmhash.report.paper"}}
    assert graph_tool.layer_violations(planted) == ["cmhash.report.tables -> cmhash.report.paper (both top layer)"]


def test_report_names_no_method():
    """What a figure emphasises comes from the config (highlight_method), not from the code."""
    import re

    from cmhash import methods

    names = {cls.__name__ for cls in methods.REGISTRY.values()} | {"RSHNL", "SEHA", "NSRMH", "CE"}
    for path in sorted((REPO / "src" / "cmhash" / "report").glob("*.py")):
        code = re.sub(r'""".*?"""|#.*', "", path.read_text(), flags=re.S)  # docstrings and comments may cite papers
        quoted = set(re.findall(r'"([A-Za-z0-9-]+)"', code))
        assert not quoted & names, f"{path.name} names {sorted(quoted & names)}"
