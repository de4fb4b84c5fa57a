"""Tests that open a real headless browser (marker ``browser``)."""
