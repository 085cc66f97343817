"""Pure ML cores: features, triple-barrier labels, calibration, evaluation, a planted-signal generator (no Django)."""
