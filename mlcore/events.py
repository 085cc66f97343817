"""The "prediction created" event, for listeners such as monitoring (trading sizes predictions in its per-bar
workflow, from the facts `prediction_create` returns, not through this event).

Sent once per stored prediction, after it is committed, through `send_robust` (one failing receiver cannot stop
the others or the prediction). Keyword arguments: prediction (mlcore.models.Prediction).
"""
from django.dispatch import Signal

prediction_created = Signal()

# Sent once a version has become its market's active one (after the promotion committed), for listeners such as
# monitoring, which scores it at once. Keyword arguments: version_id (int).
model_version_promoted = Signal()

# Sent when a retraining reaches a decision or an end (kept, proposed, promoted, rejected, failed, skipped), after it
# committed, for listeners such as monitoring (an alert when one failed or was refused). Keyword arguments:
# retraining_id (int).
retraining_decided = Signal()

# Sent when a training run (`manage.py train`, `train_version`) ends, failed or succeeded, after it committed, for
# listeners such as monitoring (an alert while the market's last training failed). Keyword arguments: run_id (int).
training_run_ended = Signal()
