"""Dock widget "Nanowire workflow": every step in one dock, in the order of the work.

Tabs: 1 Encoder (choose one, or pretrain your own) -> 2 Classify morphology
-> 3 Segment nanowires -> 4 Analyse -> 5 Bundle and batch. Each tab is the
step's own widget; they share the viewer's session (:mod:`..session`), so
an encoder chosen in tab 1 is the one tabs 2 and 3 train on, and what they
train is what tab 5 saves and runs over folders.
"""

from __future__ import annotations

from qtpy.QtWidgets import QFrame, QLabel, QScrollArea, QTabWidget, QVBoxLayout, QWidget

from .analysis_widget import AnalysisWidget
from .batch_widget import BatchWidget
from .classify_widget import ClassifyWidget
from .encoder_widget import EncoderWidget
from .pretrain_widget import PretrainWidget
from .segment_widget import SegmentWidget

STEPS = ("1 Encoder", "2 Classify", "3 Segment", "4 Analyse", "5 Bundle + batch")


def _scrolling(*widgets) -> QScrollArea:
    """The widgets stacked vertically in a scroll area (a dock can be shorter than a step)."""
    page = QWidget()
    layout = QVBoxLayout(page)
    for widget in widgets:
        layout.addWidget(widget)
    layout.addStretch(1)
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setWidget(page)
    return area


class WorkflowWidget(QTabWidget):
    """The five steps as tabs; see the module docstring."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.encoder = EncoderWidget(napari_viewer)
        self.pretrain = PretrainWidget(napari_viewer)
        self.classify = ClassifyWidget(napari_viewer)
        self.segment = SegmentWidget(napari_viewer)
        self.analyse = AnalysisWidget(napari_viewer)
        self.batch = BatchWidget(napari_viewer)
        pretrain_title = QLabel("<b>Optional: pretrain your own encoder</b> on unlabelled images "
                                "(long on a CPU; the command line runs it on GPU servers)")
        pretrain_title.setWordWrap(True)
        pages = ((self.encoder.native, pretrain_title, self.pretrain.native), (self.classify.native,), (self.segment.native,),
                 (self.analyse.native,), (self.batch.native,))
        for title, widgets in zip(STEPS, pages):
            self.addTab(_scrolling(*widgets), title)
