"""ML registry and predictions will live here."""
