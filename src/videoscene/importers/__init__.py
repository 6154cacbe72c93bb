"""Importers of released weights: MVSplat's checkpoint to a prior folder, and its check against reference
outputs (`videoscene weights import-mvsplat`, `videoscene weights verify-mvsplat`)."""
