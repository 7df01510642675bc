rule extract_features:
    """Own corpus (format folder): every table row's image through the backbone, its text through the vectoriser."""
    input:
        unpack(folder_inputs),
    output:
        features="results/features/{dataset}.h5",
    log:
        "logs/extract_features/{dataset}.log",
    conda:
        "../workflow/envs/data.yaml"
    threads: 4
    resources:
        gpu=1 if config["device"] == "cuda" else 0,
    params:
        # Only the settings that change the features: a new split or label column keeps this file.
        settings=folder_extraction_settings,
        data_root=str(DATA_ROOT),
        device=config["device"],
    script:
        "../workflow/scripts/extract_features.py"
