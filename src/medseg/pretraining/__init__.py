"""Self-supervised pre-training of a planned network's encoder on unlabelled scans (``medseg pretrain``).

masking.py  the masked-block maths (pure): block grid, random block mask, masked L2 loss
patches.py  unlabelled scans found, preprocessed as training data, and random patches drawn from them
folder.py   PretrainDir: every file name of a pre-training folder; the encoder weights and their sidecar
loop.py     PretrainOptions and pretrain(): the resumable, time-budgeted reconstruction loop
"""
