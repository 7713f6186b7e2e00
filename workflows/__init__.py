"""Orchestration only: deterministic workflow code."""
