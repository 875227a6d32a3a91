"""The shared harness of the benchmarks: the stack (services in processes), what is measured
around a run, and the reports."""
