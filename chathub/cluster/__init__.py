"""Cluster mode: several chathub nodes share one hub (PostgreSQL the truth, Redis the doorbell)."""
