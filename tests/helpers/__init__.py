"""Helpers shared by test modules: paths, tiny image folders and runs, Chromium, Quick-Tune slices."""
