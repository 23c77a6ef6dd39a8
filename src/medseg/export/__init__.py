"""Export: a trained run (or an ensemble) as one self-contained bundle file (``MODEL.medseg``) that the
torch-free runtime (``runtime/``, package ``medseg_runtime``) predicts with; see docs/export.md."""
