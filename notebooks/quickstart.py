# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Quickstart: train, evaluate and recommend from the local warehouse
#
# The pipeline's own functions (`trainer.pipeline`), not a copy: what this notebook computes is
# what `recflow run` computes. It reads the marts of the local DuckDB warehouse and dbt's
# manifest, so build them first:
#
#     make run        # sample data (if none yet) -> dbt build -> train -> serving models
#
# The warehouse is `RECFLOW_DUCKDB_PATH` (default `data/warehouse.duckdb`) and the manifest is in
# `DBT_TARGET_PATH` (default `dbt/target`), read the way `recflow` reads them. This file is a
# jupytext percent script paired with `quickstart.ipynb`: review and edit the `.py`; Jupyter with
# jupytext keeps both in step (`jupytext --sync notebooks/quickstart.py` does it by hand).

# %%
import matplotlib.pyplot as plt

from recflow.pipeline.settings import Settings
from trainer.pipeline import (
    evaluate_model,
    load_feature_spec,
    load_tables,
    recommend,
    summary_table,
    train,
)
from trainer.ranker import RankerParams, feature_importance

settings = Settings.from_env()
warehouse_uri = f"duckdb://{settings.duckdb_path}"
manifest_path = settings.dbt_target_path / "manifest.json"
print(f"warehouse {warehouse_uri}\nmanifest  {manifest_path}")

# %% [markdown]
# ## Load the feature tables
#
# The feature spec (keys, group, label, features, categoricals) comes from the column `meta` of
# the marts' YAML, through the manifest; `load_tables` reads and checks the marts against it.

# %%
spec, manifest_sha = load_feature_spec(manifest_path)
tables = load_tables(warehouse_uri, spec)
print(f"{len(spec.features)} features: {', '.join(spec.features)}")
tables.examples.groupby(spec.split).size().rename("training examples").to_frame()

# %% [markdown]
# ## Train
#
# LightGBM lambdarank on the train split, early stopping on validation. Change the parameters
# here to try a variant; `recflow run` uses the defaults.

# %%
params = RankerParams(num_boost_round=200, num_threads=2, log_every=1000)
booster = train(tables, spec, params)
print(f"best iteration {booster.best_iteration}")

# %% [markdown]
# ## Evaluate against the baselines
#
# On the test cutoffs, against every positive in the label window, beside the baselines computed
# on the same split; 95% bootstrap intervals over users.

# %%
KS = (10, 20)
evaluation = evaluate_model(booster, tables, spec, ks=KS)
print(summary_table(evaluation, ks=KS))

# %%
PRIMARY = f"ndcg@{min(KS)}"
segment = "warm_users"
by_ranker = evaluation.metrics[segment]
intervals = evaluation.intervals.get(segment, {})
rankers = sorted(by_ranker, key=lambda name: by_ranker[name][PRIMARY])
values = [by_ranker[name][PRIMARY] for name in rankers]
bounds = [
    intervals.get(name, {}).get(PRIMARY) or [value, value]
    for name, value in zip(rankers, values, strict=True)
]
errors = [
    [value - low for value, (low, _) in zip(values, bounds, strict=True)],
    [high - value for value, (_, high) in zip(values, bounds, strict=True)],
]

figure, axes = plt.subplots(figsize=(7, 0.5 * len(rankers) + 1.5))
axes.barh(
    rankers,
    values,
    xerr=errors,
    capsize=3,
    color=["tab:orange" if name == "model" else "tab:gray" for name in rankers],
)
axes.set_xlabel(f"{PRIMARY} ({segment}, 95% bootstrap interval)")
axes.set_title("Model against the baselines on the test cutoffs")
figure.tight_layout()
plt.show()

# %% [markdown]
# ## Feature importance
#
# Total gain per feature: which columns of the marts the model leans on.

# %%
importance = feature_importance(booster)
figure, axes = plt.subplots(figsize=(7, 0.35 * len(importance) + 1.5))
axes.barh(importance["feature"][::-1], importance["gain"][::-1], color="tab:blue")
axes.set_xlabel("total gain")
axes.set_title("Feature importance")
figure.tight_layout()
plt.show()
importance.round(1)

# %% [markdown]
# ## Recommend
#
# Top-20 for every known user at the latest cutoff, with the popularity fallback for users
# without candidates: the batch `recflow run` writes to `ml.batch_recommendations`.

# %%
recommendations = recommend(booster, tables, spec, k=20, model_version="notebook").to_pandas()
print(f"{recommendations['user_id'].nunique()} users, {len(recommendations)} rows")
recommendations.head(10)
