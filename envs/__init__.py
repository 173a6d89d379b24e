"""crlgym tasks and task sequences behind the gymnasium API.

>>> from crlgym import envs
>>> env = envs.make_env("hammer", seed=0)                  # one Meta-World v3 task
>>> seq = envs.load_sequence("CW10")                       # a registered sequence
>>> train_env = seq.make_env(1, seed=0)                     # the second task's env
>>> memory = envs.load_sequence("recall-d50,recall-d200")   # memory tasks (envs/recall.py)

Importing this package sets ``MUJOCO_GL`` for headless rendering (unless already set); the
``crlgym/<task>`` gymnasium ids are registered by ``import crlgym``. The user-facing errors
live in `crlgym.errors` (re-exported as ``crlgym.ConfigError`` and so on).  Task families
(Meta-World, DMControl, toy, recall, goal-masked) are plug-ins: a `TaskFamily` subclass
(envs/families.py) registered in ``FAMILIES`` (envs/tasks.py).
"""

from crlgym.envs.headless import configure_headless_rendering

GL_BACKEND = configure_headless_rendering()  # must precede any mujoco import

from crlgym.envs.families import TaskFamily  # noqa: E402
from crlgym.envs.make import EnvConfig, default_episode_length, expert_policy, make_env  # noqa: E402
from crlgym.envs.sequences import (  # noqa: E402
    SEQUENCE_DESCRIPTIONS,
    SEQUENCES,
    SequenceTask,
    TaskSequence,
    load_sequence,
    load_sequence_file,
)
from crlgym.envs.tasks import (  # noqa: E402
    FAMILIES,
    METAWORLD_TASKS,
    all_tasks,
    canonical_task_name,
    dmc_tasks,
    resolve_task,
    task_domain,
)

__all__ = [
    "FAMILIES",
    "GL_BACKEND",
    "METAWORLD_TASKS",
    "SEQUENCES",
    "SEQUENCE_DESCRIPTIONS",
    "EnvConfig",
    "SequenceTask",
    "TaskFamily",
    "TaskSequence",
    "all_tasks",
    "canonical_task_name",
    "default_episode_length",
    "dmc_tasks",
    "expert_policy",
    "load_sequence",
    "load_sequence_file",
    "make_env",
    "resolve_task",
    "task_domain",
]
