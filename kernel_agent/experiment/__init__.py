"""Experiments: tasks x configurations x repeats, each run recorded, the results a table with their uncertainty."""
