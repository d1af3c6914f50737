"""perftune.tune: the auto-tuner behind `perftune tune` (no torch at import).

space.py       the search space: --knob, [tool.perftune.tune], declared knobs, findings
injected.py    the knobs perftune applies itself (precision, checkpoint, batch_size)
trial.py       one trial: a capture run (no profiler) -> TrialOutcome
objective.py   throughput (samples/s or tokens/s)
constraints.py memory budget, accuracy guard
history.py     trials grouped by configuration, verdicts, the incumbent
strategy.py    what to try next (grid, structured, Optuna samplers, repeats, baselines)
study.py       the Optuna study (journal file or database), ask/tell, stale trials
tuner.py       the loop
results.py     tuning.json; apply.py: how to apply the best configuration
figures.py     plotly figures (tuning_figures); render.py: terminal table, tuning.html
tensorboard.py HParams
"""
