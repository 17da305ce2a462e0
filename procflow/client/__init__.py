"""Prefect's import path `prefect.client`: only its schema objects (there is no server to talk to)."""
