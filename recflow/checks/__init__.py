"""`recflow check-bigquery`: the dbt project compiled for BigQuery offline, every statement
checked."""
