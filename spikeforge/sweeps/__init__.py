"""Architecture sweeps: a spec of design points (spec), run on local processes or Dask (pool,
evaluate), stored in SQLite (store), summarised as a Pareto front and plots (report)."""
