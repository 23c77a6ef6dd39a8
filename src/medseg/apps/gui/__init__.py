"""medseg's desktop application (``medseg gui``, PySide6): open a scan, segment it, inspect, correct and save.

Modules, one concept each: :mod:`.app` (start), :mod:`.window` (the main window), :mod:`.viewer` and
:mod:`.slice_view` (the linked planes), :mod:`.surface_view` (3D), :mod:`.panels` (table and controls),
:mod:`.worker` (segmentation thread), :mod:`.editing` (undo); and pure numpy, testable without a window:
:mod:`.display` (window/level, overlay), :mod:`.scan` (a scan and its planes), :mod:`.brush`,
:mod:`.session` (segmentation and saving), :mod:`.models` (the one place a model is loaded).
Like every app it uses only ``import medseg`` (the public API).
"""
