"""crlgym tasks and task sequences behind the gymnasium API.

>>> import envs
>>> env = envs.make_env("hammer", seed=0)                  # one Meta-World v3 task
>>> seq = envs.load_sequence("CW10")                       # a registered sequence
>>> train_env = seq.make_env(seq.current_task_index, seed=0)
>>> memory = envs.load_sequence("recall-d50,recall-d200")   # memory tasks (envs/recall.py)

Importing this package sets ``MUJOCO_GL`` for headless rendering (unless already set) and
registers ``crlgym/<task>`` ids with gymnasium.
"""

from envs.headless import configure_headless_rendering

GL_BACKEND = configure_headless_rendering()  # must precede any mujoco import

from envs.errors import (  # noqa: E402
    ConfigError,
    CrlgymError,
    SequenceFileError,
    SpaceMismatchError,
    UnknownSequenceError,
    UnknownTaskError,
)
from envs.make import EnvConfig, default_episode_length, expert_policy, make_env  # noqa: E402
from envs.registration import register_envs  # noqa: E402
from envs.sequences import (  # noqa: E402
    SEQUENCE_DESCRIPTIONS,
    SEQUENCES,
    SequenceTask,
    TaskSequence,
    load_sequence,
    load_sequence_file,
)
from envs.tasks import (  # noqa: E402
    METAWORLD_TASKS,
    all_tasks,
    canonical_task_name,
    dmc_tasks,
    task_domain,
)

register_envs()

__all__ = [
    "GL_BACKEND",
    "METAWORLD_TASKS",
    "SEQUENCES",
    "SEQUENCE_DESCRIPTIONS",
    "ConfigError",
    "CrlgymError",
    "EnvConfig",
    "SequenceFileError",
    "SequenceTask",
    "SpaceMismatchError",
    "TaskSequence",
    "UnknownSequenceError",
    "UnknownTaskError",
    "all_tasks",
    "canonical_task_name",
    "default_episode_length",
    "dmc_tasks",
    "expert_policy",
    "load_sequence",
    "load_sequence_file",
    "make_env",
    "task_domain",
]
