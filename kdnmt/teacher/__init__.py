"""Teacher-side artefacts for distillation.

``select`` picks the n-best hypothesis closest to the reference (sequence-level interpolation);
``store`` keeps the teacher's top-k soft targets on disk, memory-mapped, for token-level KD.
Nothing heavy is imported here so that importing a submodule stays cheap.
"""
