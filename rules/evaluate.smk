rule evaluate:
    """Codes of a training group -> MAP@all, MAP@k, PR by Hamming radius and P@N per run (+ joint code sets)."""
    input:
        GROUP_DIR,  # the training group's folder (same wildcards)
    output:
        directory(RUN_DIR),  # one metrics file per run, named as its train file
    log:
        "logs/evaluate/{dataset}/{noise_kind}/{method}/seed{seed}/{group}.log",
    conda:
        "../workflow/envs/evaluate.yaml"
    threads: 1  # memory-bound: 2 threads gave no speed-up (benchmarks/README.md, map_nuswide)
    params:
        members=group_members,
        evaluation=config["evaluation"],
    script:
        "../workflow/scripts/evaluate.py"
