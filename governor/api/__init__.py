"""The Python API: QCG-PilotJob's ``Manager``/``LocalManager``/``Jobs`` and an Executor.

User code imports these names from ``hpilot.governor``; this package holds them.
"""
