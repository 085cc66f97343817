"""Pure trading cores: no Django imports here (checked by the import-linter test)."""
