"""`data.options` names: the one check that a family's options are ones it declares (its module's
`OPTIONS[kind]`). Checks names only; each family checks its values. Reads nothing."""

from __future__ import annotations

from archbench.config import DataSpec
from archbench.util.errors import ConfigError


def check_option_names(spec: DataSpec, known: frozenset[str]) -> None:
    """A ConfigError naming the keys of `data.options` that `spec.kind` does not know (`known`)."""
    unknown = sorted(set(spec.options) - known)
    if unknown:
        raise ConfigError(
            f"data.options: unknown option(s) {', '.join(unknown)} for data.kind={spec.kind} "
            f"(known: {', '.join(sorted(known))})"
        )
