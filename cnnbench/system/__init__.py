"""The system under test: provenance (inventory), per-framework environments, the machine's load from /proc,
GPU clocks (DVFS) and CPU frequency policies."""
