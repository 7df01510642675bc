rule prepare_dataset:
    """Dataset (shipped, generated, published or user file) -> canonical feature file with splits and provenance."""
    input:
        sources=dataset_input_files,
        extracted=extracted_features,
    output:
        "results/data/{dataset}.h5",
    log:
        "logs/prepare_dataset/{dataset}.log",
    conda:
        "../workflow/envs/data.yaml"
    params:
        dataset_config=lambda wc: config["datasets"][wc.dataset],
        data_root=str(Path(workflow.basedir) / config["data_root"]),
    script:
        "../workflow/scripts/prepare_dataset.py"
