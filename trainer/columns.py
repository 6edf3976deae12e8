"""The id and cutoff columns every mart the trainer reads shares, named once.

They are the trainer's contract with the marts, not a choice made in the dbt YAML: a training
example is a (user, item) pair at a cutoff, and a ranking query is one user at one cutoff.
The YAML's roles choose the rest (label, split, features, candidate sources, popularity).
"""

from __future__ import annotations

USER_ID = "user_id"
ITEM_ID = "item_id"
CUTOFF_DATE = "cutoff_date"

# What identifies one training example, in the marts' column order.
KEYS = (USER_ID, ITEM_ID, CUTOFF_DATE)
# What identifies one ranking query (a LightGBM group).
GROUP = (USER_ID, CUTOFF_DATE)
