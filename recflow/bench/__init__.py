"""`recflow bench`: the pipeline's measured cost at scale against its lower bound and a pandas
baseline (issue 7). `report` is the pure part; `command` runs the steps, each in its own process.
"""
