"""Figures and tables of individual chapters, kept out of their notebooks (one module per chapter)."""
