"""The alert rules MinhOS ships with (seeded by a migration; thresholds and severities are then edited in the admin).

code: (name, severity, threshold, description of what is compared, in the threshold's unit)
"""
RULES = {
    "health_low": ("Health under the full-size floor", "warning", 70.0,
                   "The health score (0-100) of the active version is under this; Kelly sizes are scaled down."),
    "health_critical": ("Health under the blocking floor", "critical", 40.0,
                        "The health score (0-100) is under this; sizing is zero and the model_health check blocks."),
    "no_edge": ("No validated edge", "critical", 0.0,
                "The active version's out-of-sample verdict is \"No edge\" on both sides (threshold unused)."),
    "drift": ("Feature drift", "warning", 0.25,
              "A quarter of the features, or the predicted probabilities, have a population stability index (live "
              "window against the training window, less its sampling noise) at or above this (0.1 moderate, 0.25 "
              "significant)."),
    "calibration": ("Live calibration worse than expected", "warning", 0.01,
                    "The Hosmer-Lemeshow test of the live outcomes against the calibrated probabilities has a "
                    "p-value under this (needs the minimum count)."),
    "accuracy": ("Live hit rate under expected", "warning", 0.01,
                 "The one-sided p-value of the realised hit rate against the rate the calibrated probabilities "
                 "promised is under this (needs the minimum count)."),
    "latency": ("Slow inference", "warning", 500.0, "The p99 of the total inference latency, in ms, is above this."),
    "stale_data": ("Stale market data", "critical", 180.0,
                   "Seconds since the newest bar arrived, while the market is open, are above this."),
    "retraining_failed": ("Retraining failed", "critical", 0.0,
                          "A retraining of the market failed, or its promotion was refused (an artifact that fails "
                          "its hash check); the champion keeps serving. Resolved by the market's next retraining that "
                          "reaches a decision (threshold unused)."),
    "training_failed": ("Training failed", "critical", 0.0,
                        "The market's last training run (manage.py train, the train_version tasks) failed: an error, "
                        "or its worker stopped answering mid-fit (killed or hung); nothing was registered by it. "
                        "Resolved by the market's next training that succeeds (threshold unused)."),
    "workers": ("Worker down", "critical", 30.0,
                "Seconds since a per-bar queue's worker last answered are above this (deployment mode)."),
}
