"""LightGBM ranker trained on the dbt feature tables."""
