rule evaluate:
    """Codes -> MAP@all, MAP@k, PR by Hamming radius and P@N for both retrieval directions."""
    input:
        RUN_DIR + "/train.h5",
    output:
        RUN_DIR + "/metrics.h5",
    params:
        evaluation=config["evaluation"],
    log:
        RUN_DIR.replace(RESULTS + "/runs", "logs/evaluate") + ".log",
    conda:
        "../workflow/envs/cmhash.yaml"
    script:
        "../workflow/scripts/evaluate.py"
