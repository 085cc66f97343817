"""Tests for mlcore.predictors: members, stacking, the side bundle (no database)."""
