rule train:
    """Features + noisy labels -> test-split codes and per-epoch history of one method run."""
    input:
        features=RESULTS + "/data/{dataset}.h5",
        noise=RESULTS + "/noise/{dataset}/{noise_kind}/{noise}/seed{seed}.h5",
    output:
        RUN_DIR + "/train.h5",
    params:
        hyperparameters=training_params,
        device=config["device"],
    threads: config["threads_per_training"]
    resources:
        mem_mb=4000,
    log:
        RUN_DIR.replace(RESULTS + "/runs", "logs/train") + ".log",
    benchmark:
        RUN_DIR.replace("/runs/", "/benchmarks/train/") + ".tsv"
    conda:
        "../workflow/envs/cmhash.yaml"
    script:
        "../workflow/scripts/train.py"
