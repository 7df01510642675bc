rule evaluate:
    """Codes -> MAP@all, MAP@k, PR by Hamming radius and P@N for both retrieval directions (+ FUSED)."""
    input:
        group_of_run,  # the training group's folder; params.member is this run's file in it
    output:
        "results/runs/{dataset}/{noise_kind}/{noise}/{method}/{bits}/seed{seed}/metrics.h5",
    log:
        "logs/evaluate/{dataset}/{noise_kind}/{noise}/{method}/{bits}/seed{seed}.log",
    conda:
        "../workflow/envs/evaluate.yaml"
    threads: 1  # memory-bound: 2 threads gave no speed-up (benchmarks/README.md, map_nuswide)
    params:
        member=MEMBER_PATTERN,  # this run's file in the group's folder (wildcards noise, bits)
        evaluation=config["evaluation"],
    script:
        "../workflow/scripts/evaluate.py"
