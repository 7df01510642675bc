rule train:
    """Features + noisy labels -> test-split codes and per-epoch history of one method run."""
    input:
        features="results/data/{dataset}.h5",
        noise="results/noise/{dataset}/{noise_kind}/{noise}/seed{seed}.h5",
    output:
        "results/runs/{dataset}/{noise_kind}/{noise}/{method}/{bits}/seed{seed}/train.h5",
    params:
        hyperparameters=training_params,
        device=config["device"],
    threads: config["threads_per_training"]
    resources:
        mem_mb=4000,
        # `gpu` is what cluster executors turn into a GPU request (SLURM: --gpus); see profiles/slurm
        gpu=1 if config["device"] == "cuda" else 0,
    log:
        "logs/train/{dataset}/{noise_kind}/{noise}/{method}/{bits}/seed{seed}.log",
    benchmark:
        "results/benchmarks/train/{dataset}/{noise_kind}/{noise}/{method}/{bits}/seed{seed}.tsv"
    conda:
        "../workflow/envs/cmhash.yaml"
    script:
        "../workflow/scripts/train.py"
