"""CSV files that are safe to open in a spreadsheet.

Class names and file names come from the user's folders, and a spreadsheet runs a cell that
starts with `=`, `+`, `-` or `@` (or a tab or carriage return before one) as a formula: a class
folder named `=HYPERLINK(...)` would become a live link in test_predictions.csv (CSV injection).
Every CSV the project writes goes through `writer`, which applies OWASP's rule: such a text cell
gets a leading `'`, which spreadsheets show as text and do not run. Numbers are written as they
are (a negative number is a number, not a formula).
"""
from __future__ import annotations

import csv
from typing import IO, Iterable

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value):
    """The cell as a spreadsheet shows it as text: strings starting like a formula get a leading `'`."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def read_cell(value: str) -> str:
    """A cell written by safe_cell, as it was before its leading `'`."""
    return value[1:] if value.startswith("'") and value[1:].startswith(FORMULA_STARTS) else value


class SafeWriter:
    """csv.writer whose rows are made safe cell by cell (safe_cell)."""

    def __init__(self, f: IO[str]):
        self._writer = csv.writer(f)

    def writerow(self, row: Iterable) -> None:
        self._writer.writerow([safe_cell(v) for v in row])

    def writerows(self, rows: Iterable[Iterable]) -> None:
        for row in rows:
            self.writerow(row)


def writer(f: IO[str]) -> SafeWriter:
    return SafeWriter(f)
