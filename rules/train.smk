# One job per training group (TRAINING_PLAN, rules/common.smk): every code length of one (dataset, method, noise,
# seed) with group_code_lengths: true (else one run), or every code length of one noise stack with
# stack_noise_rates: true. The job trains its runs one after another in one process (cmhash.runs.train_group)
# and writes one train file per run into the group's folder; rule evaluate reads a run's file from there.


rule train:
    """Features + noisy labels -> one train file (test/database codes, per-epoch history) per run of a group."""
    input:
        features="results/data/{dataset}.h5",
        noise=group_noise_files,
    output:
        directory(GROUP_DIR),
    log:
        "logs/train/{dataset}/{noise_kind}/{method}/seed{seed}/{group}.log",
    benchmark:
        "results/benchmarks/train/{dataset}/{noise_kind}/{method}/seed{seed}/{group}.tsv"
    conda:
        "../workflow/envs/train.yaml"
    threads: config["threads_per_training"]
    resources:
        mem_mb=4000,
        # `gpu` is what cluster executors turn into a GPU request (SLURM: --gpus); see profiles/slurm
        gpu=1 if config["device"] == "cuda" else 0,
    params:
        # the group's resolved run specs (a change of any of them reruns the group) and loop options; the
        # script derives the noise rates of input.noise from them (cmhash.config.group_noises)
        runs=group_runs,
        options=training_options(config),
    script:
        "../workflow/scripts/train.py"
