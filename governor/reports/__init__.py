"""``hpilot report`` and ``hpilot processes``: what a finished (or killed) run left behind.

Everything here reads only the run directory -- ``service.log``, ``jobs.report``
(text or JSON lines), ``final_status``, ``rtstats/`` and ``procstats/`` -- so it works
any time after the run, off the allocation.  :mod:`.rundata` loads and explains what
is missing, :mod:`.metrics` computes the figures, :mod:`.plots` draws (matplotlib,
optional), :mod:`.processes` reads the process samples.
"""
