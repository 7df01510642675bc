"""The report: tables, figures, the paper comparison, robustness and the protocol audit of an experiment.

Two layers; a module imports only from the layer below it (tests/test_report_layers.py checks it, and
``python benchmarks/import_graph.py`` prints the graph):

- bottom -- :mod:`~cmhash.report.results` (read ``cmhash.metrics/1`` files, check schema and config hashes,
  average over seeds), :mod:`~cmhash.report.published` (the papers' MAP tables and the join with ours),
  :mod:`~cmhash.report.style` (figure styling, atomic PNG + PDF, method colours);
- top, siblings that never import each other -- :mod:`~cmhash.report.tables`, :mod:`~cmhash.report.figures`,
  :mod:`~cmhash.report.paper`, :mod:`~cmhash.report.robustness`, :mod:`~cmhash.report.audit`; each has one
  entry point that one Snakemake rule calls (``report_table``, ``report_figures``, ``report_paper``,
  ``report_robustness``, ``report_protocol_audit``).

No method is named in this package: what a figure emphasises comes from the config (``highlight_method``).
"""

BOTTOM = ("results", "published", "style")
TOP = ("tables", "figures", "paper", "robustness", "audit")

#: The figures of an experiment, one name each from config to file name (results/figures/<experiment>/<name>.png).
FIGURES = ("pr_curves", "map_vs_noise", "weight_density", "map_vs_epoch")
