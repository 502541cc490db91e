"""Research tools around the pipeline, not on its data path: the diagnosis of routed runs (diagnose_app,
diagnosis), the irreversible-mistake probe behind `bayes_harm` (probe_app), and a real device's own confidence
signals against the router (device_signals). Each has a thin CLI in experiments/."""
