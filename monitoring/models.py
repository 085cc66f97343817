"""Metric snapshots and alerts will live here."""
