"""Recipes: the settings and training calls behind each chapter, shared by notebooks and the CLI."""
