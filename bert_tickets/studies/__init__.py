"""Everything above one engine run: a study's spec, its typed jobs and transfer rows (two registries), the plan,
the runner's shares and rounds, the transfer matrix, the baselines' verdict, the report and the study's release.

    spec.py -> jobs.py (+ sources.py, transfer.py, baselines.py) -> plan.py -> runner.py, report.py -> release.py

Nothing is imported here, so `import bert_tickets.studies.spec` loads the spec alone.
"""
