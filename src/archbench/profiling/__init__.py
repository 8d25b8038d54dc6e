"""Profiling a network's cost: owns counting (params, MACs/FLOPs), timing and peak memory; never trains.

`measure` profiles one built architecture at one input size and returns a plain dict (the entries of a
record's `profile.per_resolution`). The sweep stage and the `archbench profile` command live in
`archbench.profile` and `archbench.commands.profile`; both call `measure`. Heavy imports (torch) happen
inside functions so importing this package stays cheap.
"""

from __future__ import annotations

from .measure import ProfileSettings, Target, environment, measure

__all__ = ["ProfileSettings", "Target", "environment", "measure"]
