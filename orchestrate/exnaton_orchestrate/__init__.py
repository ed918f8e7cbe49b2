"""exnaton-elt on Dagster: the code location (definitions), the database it keeps history in, and `serve`."""
