"""Prefect's `prefect._internal` import paths that user code and Prefect's tests reach."""
