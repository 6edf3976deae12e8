"""recflow: the command line around the dbt feature pipeline (sample data, runs, reports)."""
