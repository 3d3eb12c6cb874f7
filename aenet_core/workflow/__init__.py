"""What the workflow (the Snakefile and its rule files) needs to decide, free of torch so that Snakemake starts
fast: the config checks (``config``), target and round naming (``targets``), what a config asks for
(``plan``), the jobs' command-line arguments and settings files (``arguments``), the check of finished
outputs (``integrity``) and what the workflow prints at its end (``summary``).  tests/test_workflow_layer.py
checks that importing what the Snakefile imports leaves torch out."""
