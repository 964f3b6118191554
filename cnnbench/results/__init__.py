"""Results: the Result record, the SQLite store, tables, baselines, figures, the quality gate and
recommendations."""
