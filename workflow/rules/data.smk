# Data: official archives (downloaded or taken from a mirror, checksum-verified) become one
# canonical array file per split.


rule download_archive:
    output:
        f"{config['data']['downloads']}/{{archive}}",
    log:
        "logs/download/{archive}.log",
    conda:
        CONDA_ENV
    params:
        url=lambda w: config["archives"][w.archive]["url"],
        checksum=lambda w: config["archives"][w.archive]["checksum"],
        content_checksum=lambda w: config["archives"][w.archive].get("content_checksum"),
        mirror=config["data"]["mirror"],
    script:
        "../scripts/download_archive.py"


rule prepare_split:
    input:
        unpack(lambda w: plan.archive_inputs(config, w.dataset, w.split)),
    output:
        plan.DATA,
    log:
        "logs/data/{dataset}/{split}.log",
    conda:
        CONDA_ENV
    resources:
        **CPU_JOB,
    params:
        dataset=lambda w: plan.dataset_params(config, w.dataset, w.split),
        code=script_code("prepare_split"),
    script:
        "../scripts/prepare_split.py"
