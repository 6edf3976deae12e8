"""The HTML report of one run: `recflow report`, and the end of `recflow run`."""
