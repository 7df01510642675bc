rule collect_runs:
    """Metrics files of an experiment -> one row per run and task (every report rule reads this table)."""
    input:
        lambda wc: experiment_eval_dirs(wc.experiment),
    output:
        "results/tables/{experiment}_runs.csv",
    log:
        "logs/collect_runs/{experiment}.log",
    conda:
        "../workflow/envs/report.yaml"
    params:
        experiment="{experiment}",
        metrics=lambda wc: experiment_metrics(wc.experiment),  # the runs' files in those folders, in run order
        config_hashes=lambda wc: experiment_config_hashes(wc.experiment),
    script:
        "../workflow/scripts/collect_runs.py"


rule report_table:
    """Metrics files of an experiment -> MAP table (CSV long format, Markdown, LaTeX) and ablation table."""
    input:
        runs="results/tables/{experiment}_runs.csv",
    output:
        csv=report(
            "results/tables/{experiment}.csv",
            caption="../workflow/report/table.rst",
            category="Tables",
        ),
        md="results/tables/{experiment}.md",
        tex="results/tables/{experiment}.tex",
        ablation_csv=report(
            "results/tables/{experiment}_ablation.csv",
            caption="../workflow/report/ablation.rst",
            category="Tables",
        ),
        ablation_md="results/tables/{experiment}_ablation.md",
        ablation_tex="results/tables/{experiment}_ablation.tex",
    log:
        "logs/report_table/{experiment}.log",
    conda:
        "../workflow/envs/report.yaml"
    params:
        experiment="{experiment}",
        methods=lambda wc: config["experiments"][wc.experiment]["methods"],
        ablation_bits=lambda wc: config["experiments"][wc.experiment].get("ablation_bits"),
    script:
        "../workflow/scripts/report_table.py"


rule report_paper:
    """Metrics files of an experiment -> ours beside the papers' published MAP (CSV, Markdown, scatter)."""
    input:
        runs="results/tables/{experiment}_runs.csv",
    output:
        paper_csv=report(
            "results/tables/{experiment}_vs_paper.csv",
            caption="../workflow/report/vs_paper.rst",
            category="Tables",
        ),
        paper_md="results/tables/{experiment}_vs_paper.md",
        paper_png=report(
            "results/figures/{experiment}/ours_vs_paper.png",
            caption="../workflow/report/vs_paper.rst",
            category="Figures",
        ),
        paper_pdf="results/figures/{experiment}/ours_vs_paper.pdf",
    log:
        "logs/report_paper/{experiment}.log",
    conda:
        "../workflow/envs/report.yaml"
    params:
        experiment="{experiment}",
        methods=lambda wc: config["experiments"][wc.experiment]["methods"],
        ablation_bits=lambda wc: config["experiments"][wc.experiment].get("ablation_bits"),
        paper_map=paper_map_file(),
        dataset_names={n: d["paper_name"] for n, d in config["datasets"].items() if "paper_name" in d},
    script:
        "../workflow/scripts/report_paper.py"


rule report_robustness:
    """Metrics files of an experiment with two or more noise rates -> MAP retention per method, ours vs papers'."""
    input:
        runs="results/tables/{experiment}_runs.csv",
    output:
        csv=report(
            "results/tables/{experiment}_robustness.csv",
            caption="../workflow/report/robustness.rst",
            category="Tables",
        ),
        md="results/tables/{experiment}_robustness.md",
    log:
        "logs/report_robustness/{experiment}.log",
    conda:
        "../workflow/envs/report.yaml"
    params:
        experiment="{experiment}",
        methods=lambda wc: config["experiments"][wc.experiment]["methods"],
        paper_map=paper_map_file(),
        dataset_names={n: d["paper_name"] for n, d in config["datasets"].items() if "paper_name" in d},
    script:
        "../workflow/scripts/report_robustness.py"


rule report_figures:
    """Metrics files of an experiment -> PR curves, MAP vs noise, SPL weight density, MAP vs epoch."""
    input:
        runs="results/tables/{experiment}_runs.csv",
    output:
        **{
            f"{name}_{ext}": (
                report(
                    f"results/figures/{{experiment}}/{name}.png",
                    caption=f"../workflow/report/{name}.rst",
                    category="Figures",
                )
                if ext == "png"
                else f"results/figures/{{experiment}}/{name}.pdf"
            )
            for name in FIGURES
            for ext in ("png", "pdf")
        },
    log:
        "logs/report_figures/{experiment}.log",
    conda:
        "../workflow/envs/report.yaml"
    params:
        experiment="{experiment}",
        methods=lambda wc: config["experiments"][wc.experiment]["methods"],
        figures=lambda wc: figure_settings(wc.experiment),
    script:
        "../workflow/scripts/report_figures.py"


rule report_protocol_audit:
    """Metrics files of an experiment with `protocol_audit` -> clean vs published-protocol table and figure."""
    input:
        runs="results/tables/{experiment}_runs.csv",
    output:
        csv=report(
            "results/tables/{experiment}_protocol.csv",
            caption="../workflow/report/protocol_audit.rst",
            category="Tables",
        ),
        md="results/tables/{experiment}_protocol.md",
        png=report(
            "results/figures/{experiment}/protocol.png",
            caption="../workflow/report/protocol_audit.rst",
            category="Figures",
        ),
        pdf="results/figures/{experiment}/protocol.pdf",
    log:
        "logs/report_protocol_audit/{experiment}.log",
    conda:
        "../workflow/envs/report.yaml"
    params:
        experiment="{experiment}",
        audit=lambda wc: config["experiments"][wc.experiment].get("protocol_audit", {}),
    script:
        "../workflow/scripts/report_protocol_audit.py"
