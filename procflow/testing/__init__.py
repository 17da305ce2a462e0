"""Prefect's `prefect.testing` import path (`utilities.prefect_test_harness`)."""
