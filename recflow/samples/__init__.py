"""Generated sample data in the raw data contract: session logs (`events`) and MovieLens-like
ratings (`ratings`); `events.write_data_dir` writes either."""
