"""Task names of every family, their canonical spelling, and the errors for unknown ones.

Every family of tasks is a `crlgym.envs.families.TaskFamily` registered in `FAMILIES`
below, in order; the functions here (and `crlgym.envs.make_env`, `expert_policy`,
`default_episode_length`) ask the families.  Canonical names: Meta-World ``hammer-v3``
(``hammer`` is accepted), DMControl ``domain-task`` exactly as dm_control spells them
(``point_mass-easy``), the pure-numpy test tasks ``toy-reach-<k>`` / ``toy-mirror-<k>``, and
two memory families whose names are parsed by pattern: recall tasks ``recall-d<D>[-c<C>]...``
(envs/recall.py, domain ``recall``) and goal-masked Meta-World ``masked<K>-<task>``
(envs/goal_mask.py, domain ``metaworld``).  Name lists are static so that ``import crlgym``
stays fast; tests check them against the installed libraries.  `all_tasks` lists
representative members of the parsed families; any other valid member builds with
`crlgym.envs.make_env` all the same.
"""

from __future__ import annotations

import difflib

from crlgym.envs.dmc_env import DMControlFamily
from crlgym.envs.families import TaskFamily
from crlgym.envs.goal_mask import (
    MASKED_NAME_FORMAT,
    MASKED_TASK_NAMES,
    GoalMaskedFamily,
    split_masked_name,
)
from crlgym.envs.metaworld_env import CW10, METAWORLD_SUFFIX, METAWORLD_TASKS, MetaWorldFamily
from crlgym.envs.recall import RecallFamily
from crlgym.envs.toy import ToyFamily
from crlgym.errors import UnknownTaskError

__all__ = [
    "CW10",
    "FAMILIES",
    "MASKED_NAME_FORMAT",
    "MASKED_TASK_NAMES",
    "METAWORLD_SUFFIX",
    "METAWORLD_TASKS",
    "Domain",
    "all_tasks",
    "canonical_task_name",
    "dmc_tasks",
    "resolve_task",
    "split_masked_task",
    "task_domain",
    "unknown_name_message",
]

#: A family's domain (``metaworld``, ``dmc``, ``toy``, ``recall``, or a plug-in's own).
Domain = str

#: Every task family, by name, in order: `all_tasks` lists their names in this order, and a
#: name belongs to the first family whose `TaskFamily.canonical` claims it.  Add a family here.
FAMILIES: dict[str, TaskFamily] = {
    "metaworld": MetaWorldFamily(),
    "dmc": DMControlFamily(),
    "toy": ToyFamily(),
    "recall": RecallFamily(),
    "masked": GoalMaskedFamily(),
}


def dmc_tasks() -> tuple[str, ...]:
    """Every DMControl suite task as ``domain-task``."""
    return FAMILIES["dmc"].names()


def all_tasks() -> tuple[str, ...]:
    """Every task name crlgym registers and lists, canonical spelling, family by family."""
    return tuple(name for family in FAMILIES.values() for name in family.names())


def resolve_task(name: str) -> tuple[str, TaskFamily]:
    """The canonical spelling of ``name`` and the family it belongs to.

    Raises:
        UnknownTaskError: no family claims ``name`` (or the family whose pattern it has
            finds it invalid); one line, with the closest valid names.
    """
    for family in FAMILIES.values():
        canonical = family.canonical(name)
        if canonical is not None:
            return canonical, family
    raise UnknownTaskError(unknown_name_message("task", name, all_tasks(), "crl list tasks"))


def canonical_task_name(name: str) -> str:
    """Return the canonical spelling of ``name`` or raise `UnknownTaskError`.

    Meta-World tasks may drop the ``-v3`` suffix (also inside ``masked<K>-...``); recall
    names are rewritten with their default parameters left out; whitespace around the name
    is ignored.
    """
    return resolve_task(name)[0]


def task_domain(name: str) -> Domain:
    """The domain a (canonical or short) task name belongs to (its family's ``domain``).

    Goal-masked tasks are Meta-World tasks (same simulator, expert and episode length).
    """
    return resolve_task(name)[1].domain


def split_masked_task(name: str) -> tuple[int, str] | None:
    """``(K, canonical Meta-World task)`` of a goal-masked task, None for any other task."""
    canonical, family = resolve_task(name)
    if not isinstance(family, GoalMaskedFamily):
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
