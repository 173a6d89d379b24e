"""Task names of every domain, their canonical spelling, and the errors for unknown ones.

Canonical names: Meta-World ``hammer-v3`` (``hammer`` is accepted), DMControl
``domain-task`` exactly as dm_control spells them (``point_mass-easy``), the pure-numpy
test tasks ``toy-reach-<k>`` / ``toy-mirror-<k>``, and two memory families whose names are
parsed by pattern: recall tasks ``recall-d<D>[-c<C>]...`` (envs/recall.py, domain
``recall``) and goal-masked Meta-World ``masked<K>-<task>`` (envs/goal_mask.py, domain
``metaworld``).  Name lists are static so that ``import crlgym`` stays fast; tests check them
against the installed libraries.  `all_tasks` lists representative members of the parsed
families; any other valid member builds with `crlgym.envs.make_env` all the same.
"""

from __future__ import annotations

import difflib
from typing import Literal

from crlgym.envs.dmc_specs import load_dmc_specs
from crlgym.envs.goal_mask import masked_name, split_masked_name
from crlgym.envs.recall import (
    RECALL_NAME_FORMAT,
    RECALL_TASK_NAMES,
    RecallNameError,
    parse_recall_name,
)
from crlgym.envs.toy import TOY_TASK_NAMES

from crlgym.errors import UnknownTaskError

Domain = Literal["metaworld", "dmc", "toy", "recall"]

#: Meta-World v3's MT50 tasks, in ``metaworld.env_dict.ALL_V3_ENVIRONMENTS`` order.
METAWORLD_TASKS: tuple[str, ...] = (
    "assembly-v3", "basketball-v3", "bin-picking-v3", "box-close-v3",
    "button-press-topdown-v3", "button-press-topdown-wall-v3", "button-press-v3",
    "button-press-wall-v3", "coffee-button-v3", "coffee-pull-v3", "coffee-push-v3",
    "dial-turn-v3", "disassemble-v3", "door-close-v3", "door-lock-v3", "door-open-v3",
    "door-unlock-v3", "hand-insert-v3", "drawer-close-v3", "drawer-open-v3",
    "faucet-open-v3", "faucet-close-v3", "hammer-v3", "handle-press-side-v3",
    "handle-press-v3", "handle-pull-side-v3", "handle-pull-v3", "lever-pull-v3",
    "pick-place-wall-v3", "pick-out-of-hole-v3", "pick-place-v3", "plate-slide-v3",
    "plate-slide-side-v3", "plate-slide-back-v3", "plate-slide-back-side-v3",
    "peg-insert-side-v3", "peg-unplug-side-v3", "soccer-v3", "stick-push-v3",
    "stick-pull-v3", "push-v3", "push-wall-v3", "push-back-v3", "reach-v3",
    "reach-wall-v3", "shelf-place-v3", "sweep-into-v3", "sweep-v3", "window-open-v3",
    "window-close-v3",
)  # fmt: skip

METAWORLD_SUFFIX = "-v3"

#: Continual World's CW10, in the paper's order.
CW10: tuple[str, ...] = (
    "hammer-v3", "push-wall-v3", "faucet-close-v3", "push-back-v3", "stick-pull-v3",
    "handle-press-side-v3", "push-v3", "shelf-place-v3", "window-close-v3",
    "peg-unplug-side-v3",
)  # fmt: skip

#: Representative goal-masked tasks (registered with gymnasium): CW10 and reach, K = 10.
MASKED_TASK_NAMES: tuple[str, ...] = tuple(masked_name(10, t) for t in (*CW10, "reach-v3"))
MASKED_NAME_FORMAT = "masked<K>-<Meta-World task>"


def dmc_tasks() -> tuple[str, ...]:
    """Every DMControl suite task as ``domain-task``."""
    return tuple(load_dmc_specs())


def all_tasks() -> tuple[str, ...]:
    """Every task name crlgym can build, canonical spelling."""
    return METAWORLD_TASKS + dmc_tasks() + TOY_TASK_NAMES + RECALL_TASK_NAMES + MASKED_TASK_NAMES


def canonical_task_name(name: str) -> str:
    """Return the canonical spelling of ``name`` or raise `UnknownTaskError`.

    Meta-World tasks may drop the ``-v3`` suffix (also inside ``masked<K>-...``); recall
    names are rewritten with their default parameters left out; whitespace around the name
    is ignored.
    """
    cleaned = name.strip()
    if cleaned in METAWORLD_TASKS or cleaned in TOY_TASK_NAMES:
        return cleaned
    if cleaned + METAWORLD_SUFFIX in METAWORLD_TASKS:
        return cleaned + METAWORLD_SUFFIX
    if cleaned == "recall" or cleaned.startswith("recall-"):
        return _canonical_recall_name(name)
    masked = split_masked_name(cleaned)
    if masked is not None:
        return _canonical_masked_name(name, *masked)
    if cleaned in load_dmc_specs():
        return cleaned
    raise UnknownTaskError(unknown_name_message("task", name, all_tasks(), "crl list tasks"))


def _canonical_recall_name(name: str) -> str:
    try:
        return parse_recall_name(name).name
    except RecallNameError as error:
        detail = f"{error}; recall tasks are named {RECALL_NAME_FORMAT}"
        raise UnknownTaskError(
            unknown_name_message("task", name, all_tasks(), "crl list tasks", detail=detail)
        ) from None


def _canonical_masked_name(name: str, visible_steps: int, inner: str) -> str:
    if inner in METAWORLD_TASKS:
        return masked_name(visible_steps, inner)
    if inner + METAWORLD_SUFFIX in METAWORLD_TASKS:
        return masked_name(visible_steps, inner + METAWORLD_SUFFIX)
    # Suggest masked names with the K the user asked for.
    valid = tuple(masked_name(visible_steps, t) for t in METAWORLD_TASKS)
    detail = f"goal-masked tasks are named {MASKED_NAME_FORMAT}"
    raise UnknownTaskError(
        unknown_name_message("task", name, valid, "crl list tasks", detail=detail)
    )


def task_domain(name: str) -> Domain:
    """The domain a (canonical or short) task name belongs to.

    Goal-masked tasks are Meta-World tasks (same simulator, expert and episode length).
    """
    canonical = canonical_task_name(name)
    if canonical in METAWORLD_TASKS or canonical.startswith("masked"):
        return "metaworld"
    if canonical in TOY_TASK_NAMES:
        return "toy"
    if canonical.startswith("recall-"):
        return "recall"
    return "dmc"


def split_masked_task(name: str) -> tuple[int, str] | None:
    """``(K, canonical Meta-World task)`` of a goal-masked task, None for any other task."""
    canonical = canonical_task_name(name)
    if canonical in METAWORLD_TASKS:
        return None
    return split_masked_name(canonical)


def unknown_name_message(
    kind: str, name: str, valid: tuple[str, ...], listing: str, *, detail: str = ""
) -> str:
    """'unknown task 'hamer'; closest: hammer-v3, ...' with the command listing all names.

    ``detail`` (what exactly is wrong with the name) goes in parentheses after the name.
    """
    short = {v.removesuffix(METAWORLD_SUFFIX): v for v in valid}
    close = difflib.get_close_matches(name.strip(), list(short) + list(valid), n=5, cutoff=0.5)
    suggestions = list(dict.fromkeys(short.get(c, c) for c in close))
    hint = f"; closest valid names: {', '.join(suggestions)}" if suggestions else ""
    what = f" ({detail})" if detail else ""
    return f"unknown {kind} '{name}'{what}{hint}. Run '{listing}' to see them all."
