"""The read-only results table the widgets show their measurements and predictions in."""

from __future__ import annotations

from magicgui.widgets import Table
from qtpy.QtWidgets import QAbstractItemView, QStyledItemDelegate


def results_table(columns) -> Table:
    """An empty, read-only table with these columns and no row numbers.

    Cells show the text they are given: magicgui's own delegate would re-format
    numbers (0.03 -> 3.000e-02).
    """
    table = Table(value={"data": [], "index": [], "columns": tuple(columns)})
    table.native.verticalHeader().setVisible(False)
    table.native.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.native.setItemDelegate(QStyledItemDelegate(table.native))
    return table
