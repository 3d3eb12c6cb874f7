"""``python dry_run.py PLAN.json SNAKEMAKE-ARGUMENTS...``: Snakemake's command line, run in this process, and the
jobs it plans written to PLAN.json: {"counts": {rule: jobs}, "jobs": [{"rule", "wildcards", "input", "resources",
"threads", "shellcmd"}]}, from the log events Snakemake hands its logger plugins rather than from its printed text.
"""
import json
import logging
import sys
from pathlib import Path

from snakemake.cli import main
from snakemake_interface_logger_plugins.common import LogEvent


class Plan(logging.Handler):
    def __init__(self):
        super().__init__()
        self.counts, self.jobs = {}, []

    def emit(self, record):
        event = getattr(record, "event", None)
        if event == LogEvent.RUN_INFO:
            self.counts = {rule: count for rule, count in record.stats.items() if rule != "total"}
        elif event == LogEvent.JOB_INFO:
            self.jobs.append({"rule": record.rule_name, "wildcards": dict(record.wildcards),
                              "input": list(record.input), "resources": dict(record.resources),
                              "threads": record.threads, "shellcmd": record.shellcmd})


if __name__ == "__main__":
    plan = Plan()
    logging.getLogger().addHandler(plan)  # Snakemake's logger passes its records on to the root logger's handlers
    try:
        main(sys.argv[2:])
    finally:
        Path(sys.argv[1]).write_text(json.dumps({"counts": plan.counts, "jobs": plan.jobs}, default=str))
