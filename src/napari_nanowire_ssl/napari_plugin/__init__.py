"""The thin napari layer: reader, sample data and dock widgets.

Everything here only builds UI, starts workers and puts results on layers; the
work itself is done by the Qt-free core (``io``, ``synth``, ``models``,
``analysis``), which the CLI and the tests call too.
"""

import sys

# Linux CUDA builds of torch ship triton, which bundles its own LLVM. Importing
# it after napari has created an OpenGL context on Mesa (llvmpipe, radeonsi:
# Mesa loads the system LLVM) crashes the process with a segmentation fault,
# and torchvision imports it through torch._dynamo. The GUI never compiles
# kernels, so inside napari triton is marked as absent (torch then treats it
# as not installed). The command line is not affected.
if "triton" not in sys.modules:
    sys.modules["triton"] = None
