"""Tests that need the framework environments (make frameworks); skipped when they are not built."""
