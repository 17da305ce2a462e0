"""Prefect's `prefect.utilities` import paths (only `annotations`)."""
