"""Evaluation: scoring (the one scoring path), metrics, the typed report and its HTML, comparison, fusion."""
