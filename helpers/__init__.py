"""Helpers shared by the chapters of the book."""
