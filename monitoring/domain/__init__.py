"""Monitoring's pure cores: live metrics, the health score and alert evaluation (no Django)."""
