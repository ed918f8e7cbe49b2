"""`make bench`: throughput of the pipeline against the physical limit and a peer (dlt); see BENCHMARKS.md."""
