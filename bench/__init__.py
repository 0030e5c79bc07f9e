"""Benchmarks of mska-core. Run each as a module from the repository root: ``python -m bench.NAME``."""
