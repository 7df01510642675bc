rule train:
    """Features + noisy labels -> test-split codes and per-epoch history of one method run."""
    input:
        features="results/data/{dataset}.h5",
        noise="results/noise/{dataset}/{noise_kind}/{noise}/seed{seed}.h5",
    output:
        "results/runs/{dataset}/{noise_kind}/{noise}/{method}/{bits}/seed{seed}/train.h5",
    log:
        "logs/train/{dataset}/{noise_kind}/{noise}/{method}/{bits}/seed{seed}.log",
    benchmark:
        "results/benchmarks/train/{dataset}/{noise_kind}/{noise}/{method}/{bits}/seed{seed}.tsv"
    conda:
        "../workflow/envs/cmhash.yaml"
    threads: config["threads_per_training"]
    resources:
        mem_mb=4000,
        # `gpu` is what cluster executors turn into a GPU request (SLURM: --gpus); see profiles/slurm
        gpu=1 if config["device"] == "cuda" else 0,
    params:
        hyperparameters=training_params,
        device=config["device"],
    script:
        "../workflow/scripts/train.py"


# stack_noise_rates: true -> the runs of a stackable method (RSHNL and its ablations) that differ only in the
# noise rate train as one stacked network in one job (cmhash.stacked); each run's train.h5 is then a copy of
# its member file. Other methods keep the rule above.
if NOISE_STACKS:

    rule train_noise_stack:
        """Features + the noisy labels of every noise rate of a stack -> one train file per member."""
        input:
            features="results/data/{dataset}.h5",
            noise=stack_noise_files,
        output:
            directory(STACK_DIR),
        log:
            "logs/train_noise_stack/{dataset}/{noise_kind}/{method}/{bits}/seed{seed}/noise{noises}.log",
        benchmark:
            "results/benchmarks/train_noise_stack/{dataset}/{noise_kind}/{method}/{bits}/seed{seed}/noise{noises}.tsv"
        wildcard_constraints:
            noises=r"0(\.\d+)?(_0(\.\d+)?)*",
        conda:
            "../workflow/envs/cmhash.yaml"
        threads: config["threads_per_training"]
        resources:
            mem_mb=4000,
            gpu=1 if config["device"] == "cuda" else 0,
        params:
            hyperparameters=training_params,
            device=config["device"],
        script:
            "../workflow/scripts/train_stack.py"

    rule unstack_train:
        """One member of a noise stack -> the run's train.h5 (a copy, written under a temporary name)."""
        input:
            stack=stack_of_run,
        output:
            "results/runs/{dataset}/{noise_kind}/{noise}/{method}/{bits}/seed{seed}/train.h5",
        log:
            "logs/unstack_train/{dataset}/{noise_kind}/{noise}/{method}/{bits}/seed{seed}.log",
        wildcard_constraints:
            method=_alternatives({method for _, method, _, _ in NOISE_STACKS}),
        conda:
            "../workflow/envs/cmhash.yaml"
        shell:
            "(cp {input.stack}/{wildcards.noise}.h5 {output}.tmp && mv {output}.tmp {output}) 2> {log}"

    ruleorder: unstack_train > train

    localrules:
        unstack_train,
