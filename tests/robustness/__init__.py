"""Fault-injection suite (issue 6): bad data, interrupted training, hostile files, bad inference inputs.

Fast cases run with the rest of the tests; ``python tools/robustness.py`` runs every case
(slow ones included) and prints a table of the faults and their outcomes.
"""
