"""The read-only results table the widgets show their measurements and predictions in."""

from __future__ import annotations

from magicgui.widgets import Table
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QStyledItemDelegate

LAYER_COLUMN_MAX_PX = 160  # longer layer names are elided (the full name in the tooltip)


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


def fit_columns(table: Table) -> None:
    """Columns as wide as their cells, the first (layer names) at most :data:`LAYER_COLUMN_MAX_PX`,
    elided there with the full name in its tooltip; the user may still drag the column edges."""
    view = table.native
    view.resizeColumnsToContents()
    if view.columnWidth(0) > LAYER_COLUMN_MAX_PX:
        view.setColumnWidth(0, LAYER_COLUMN_MAX_PX)
    for row in range(view.rowCount()):
        item = view.item(row, 0)
        if item is not None:
            item.setToolTip(item.text())
    view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
