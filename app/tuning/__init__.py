"""`train.py --tune`: sweeps over sweep.yaml (run.py), its validation (sweep_config.py) and the
trial hooks (trial.py). Kept empty so a trial importing trial.py does not load the rest."""
