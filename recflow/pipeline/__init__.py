"""The feature pipeline as the command line runs it: settings read once from the environment,
dbt as a child process, one run per warehouse, and the summary of a finished local build."""
