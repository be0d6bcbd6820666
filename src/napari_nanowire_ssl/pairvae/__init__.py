"""PairVAE (Lu & Jayaraman, JACS Au 2023): cross-reconstruction between SAXS patterns and SEM images.

``morphologies`` (block-copolymer-like structures) and ``scattering`` (their
2D SAXS patterns) make physically linked synthetic pairs; ``data`` reads
pairs folders and detector files (EDF, HDF5); ``model`` holds the two VAEs on
the frozen encoder and their model files; ``train`` the staged training loop;
``metrics`` the SAXS pixel error and the two-point correlation S2. Qt-free.
"""
