"""Errors on the command line of the Hydra app, answered in one line a user can act on.

Hydra composes the config before ``train.py`` runs a line of its own, so an override of an
option that does not exist (``method.lora_targets=[q_proj]`` on FedAvg, whose option is
``target_modules``) stops inside Hydra with "Key 'lora_targets' is not in struct".
:func:`hydra_errors` wraps the app: such an override is answered with the names that exist
(``fedmllm.config_check.explain_unknown``); Hydra's other compact errors (an unknown config
group choice) are printed as Hydra prints them; anything else is raised unchanged.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from hydra.errors import (
    CompactHydraException,
    ConfigCompositionException,
    InstantiationException,
)
from omegaconf.errors import InterpolationResolutionError, OmegaConfBaseException

from fedmllm.config_check import explain_unknown

FULL_ERROR = "HYDRA_FULL_ERROR"
_OVERRIDE = re.compile(r"Could not override '([^']+)'")


def explain_override_error(error: ConfigCompositionException, argv: Sequence[str]) -> str | None:
    """One line for an override of an option that does not exist, or None for other errors.

    The config is composed again without the failing override, to list the names that exist
    where the user pointed.
    """
    found = _OVERRIDE.search(str(error))
    if found is None:
        return None
    key = found.group(1)
    from fedmllm.configs import compose_train

    rest = [a for a in argv if not a.startswith("-") and a.split("=", 1)[0].lstrip("+~") != key]
    try:
        cfg = compose_train([a for a in rest if not a.startswith("hydra.")])
    except Exception:  # the rest does not compose either: let Hydra's message stand
        return None
    return explain_unknown(cfg, key)


def error_line(error: BaseException, argv: Sequence[str] = ()) -> str:
    """A known error as one line: an unknown override with the names that exist, a failed
    instantiation as its cause, anything else with its line breaks folded."""
    if isinstance(error, ConfigCompositionException):
        line = explain_override_error(error, argv)
        if line is not None:
            return line
    if isinstance(error, InstantiationException) and error.__cause__ is not None:
        error = error.__cause__
    return " ".join(str(error).split())


@contextmanager
def hydra_errors(
    known: tuple[type[BaseException], ...] = (), argv: Sequence[str] | None = None
) -> Iterator[None]:
    """Run a ``@hydra.main`` app so that command-line mistakes end in one line (exit 2).

    Args:
        known: Errors the app reports itself in one line; when one reaches here (a failed
            job of a multirun, which Hydra raises after the sweep) it is repeated in one line.
        argv: The command line (default ``sys.argv[1:]``).

    Hydra's own switch (``HYDRA_FULL_ERROR=1``) makes it raise instead of printing; a user
    who set it gets the full traces as before.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    user_asked = os.environ.get(FULL_ERROR)
    os.environ[FULL_ERROR] = "1"
    try:
        yield
    except ConfigCompositionException as e:
        line = None if user_asked else explain_override_error(e, argv)
        if line is None:
            _compact(e, user_asked)
        sys.stderr.write(f"error: {line}\n")
        sys.exit(2)
    except known as e:
        if user_asked:
            raise
        sys.stderr.write(f"error: {_resolver_error(e)}\n")
        sys.exit(2)
    except CompactHydraException as e:
        _compact(e, user_asked)
    finally:
        if user_asked is None:
            os.environ.pop(FULL_ERROR, None)


def _resolver_error(error: BaseException) -> BaseException:
    """The error a resolver raised (``hydra.run.dir``'s: nothing to resume), which OmegaConf
    keeps as the context of its ``InterpolationResolutionError``; else ``error``."""
    inner = error
    while isinstance(inner, InterpolationResolutionError) and inner.__context__ is not None:
        inner = inner.__context__
    return error if isinstance(inner, InterpolationResolutionError) else inner


def _compact(error: CompactHydraException, user_asked: str | None) -> None:
    """Print a Hydra error as Hydra does without ``HYDRA_FULL_ERROR`` and exit 1."""
    if user_asked:
        raise error
    sys.stderr.write(f"{error}\n")
    if isinstance(error.__cause__, OmegaConfBaseException):
        sys.stderr.write(f"{error.__cause__}\n")
    sys.exit(1)
