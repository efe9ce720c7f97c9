"""Built-in datasets: the embedded benchmark and the real benchmarks' on-disk formats."""
