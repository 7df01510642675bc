rule evaluate:
    """Codes -> MAP@all, MAP@k, PR by Hamming radius and P@N for both retrieval directions (+ FUSED)."""
    input:
        "results/runs/{dataset}/{noise_kind}/{noise}/{method}/{bits}/seed{seed}/train.h5",
    output:
        "results/runs/{dataset}/{noise_kind}/{noise}/{method}/{bits}/seed{seed}/metrics.h5",
    log:
        "logs/evaluate/{dataset}/{noise_kind}/{noise}/{method}/{bits}/seed{seed}.log",
    conda:
        "../workflow/envs/cmhash.yaml"
    threads: 2  # the metrics' query chunks (cmhash.metrics); results do not depend on it
    params:
        evaluation=config["evaluation"],
    script:
        "../workflow/scripts/evaluate.py"
