"""The "prediction created" event: trading sizes every new prediction into a recommendation; monitoring may listen.

Sent once per stored prediction, after it is committed, through `send_robust` (one failing receiver cannot stop
the others or the prediction). Keyword arguments: prediction (mlcore.models.Prediction).
"""
from django.dispatch import Signal

prediction_created = Signal()
