rule make_noisy_labels:
    """Clean training labels -> noisy labels for one (rate, seed), or a paper's published file (noise.files)."""
    input:
        unpack(noise_inputs),
    output:
        "results/noise/{dataset}/{noise_kind}/{noise}/seed{seed}.h5",
    log:
        "logs/make_noisy_labels/{dataset}/{noise_kind}/{noise}/seed{seed}.log",
    conda:
        "../workflow/envs/data.yaml"
    script:
        "../workflow/scripts/make_noisy_labels.py"
