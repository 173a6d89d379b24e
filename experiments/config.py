"""Typed run configuration: `TrainConfig` (with `crlgym.agents.sac.SACConfig` inside), YAML files,
and the command-line options generated from the fields and their docstrings."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import itertools
import textwrap
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any, get_type_hints

import yaml
from crlgym.agents.dt import DTConfig
from crlgym.agents.l2m import L2MConfig
from crlgym.agents.plasticity import PlasticityConfig
from crlgym.agents.sac import SACConfig

from crlgym.errors import ConfigError

#: Command-line prefix of DTConfig fields whose names SAC's options already use
#: (``--dt-learning-rate``); YAML files nest them under ``dt:`` instead.
DT_PREFIX = "dt_"

#: ``--agent`` choices (experiments/learners.py).
AGENTS = ("sac", "dt", "l2m")

#: Intervals that must fall on update phases (multiples of SAC's update_every).
PERIODIC_OPTIONS = ("steps_per_task", "eval_every", "checkpoint_every")


@dataclass
class TrainConfig:
    """One continual training run. Defaults: Continual World's protocol."""

    sequence: str = "CW10"
    """Task sequence: a registered name (CW10, CW20, MT40, DMC10, DMC6), a,b,c or a YAML file."""
    agent: str = "sac"
    """sac (online SAC, budgets in env steps), dt (offline Decision Transformer with a
    memory, trained on each task's dataset from crl collect; budgets in gradient updates) or
    l2m (a crl pretrain model fine-tuned offline through a modulation pool; budgets in
    gradient updates)."""
    data_dir: str = "data/datasets"
    """Where offline datasets are (agent dt; crl collect writes them)."""
    method: str = "finetune"
    """Continual-learning method (crl list methods)."""
    method_options: dict[str, Any] = field(default_factory=dict)
    """The method's own settings (e.g. coef for l2/ewc/mas); defaults: the paper's."""
    steps_per_task: int = 1_000_000
    """Env steps per task (a task's own budget in a YAML sequence wins)."""
    seed: int = 0
    """Seed of networks, exploration, replay sampling and training episodes."""
    task_id_input: bool | None = None
    """Append a one-hot task id to observations; None = exactly when multi_head (which
    uses it only to pick heads); true with a single head feeds it to the network."""
    episode_length: int | None = None
    """Steps per episode; None = the domain's default (Meta-World 200, DMControl 1000)."""
    eval_every: int = 20_000
    """Evaluate every task of the sequence every this many env steps (and at task ends)."""
    eval_episodes: int = 10
    """Stochastic evaluation episodes per task."""
    eval_deterministic_episodes: int = 1
    """Deterministic evaluation episodes per task."""
    videos: bool = True
    """Record one deterministic episode of every task seen so far as mp4."""
    video_every: int | None = None
    """Steps between videos; None = at the end of each task."""
    video_size: int = 256
    """Video frame size in pixels."""
    checkpoint_every: int = 100_000
    """Steps between checkpoints inside a task (a checkpoint is also written at every task
    end); a multiple of the episode length and of update_every."""
    run_name: str | None = None
    """Run directory name under runs_dir; None = <sequence>-<method>-s<seed>."""
    runs_dir: str = "runs"
    """Where run directories go."""
    videos_dir: str = "videos"
    """Where videos go (videos/<run>/<task>/step_<N>.mp4)."""
    threads: int = 2
    """Torch CPU threads (fix it for bit-identical reruns)."""
    progress: bool = True
    """Show the progress display."""
    sac: SACConfig = field(default_factory=SACConfig)
    """SAC hyperparameters."""
    plasticity: PlasticityConfig = field(default_factory=PlasticityConfig)
    """Replay ratio, resets and plasticity metrics."""
    dt: DTConfig = field(default_factory=DTConfig)
    """Decision Transformer and its memory (agent dt)."""
    l2m: L2MConfig = field(default_factory=L2MConfig)
    """Continual fine-tuning of a pretrained model (agent l2m; agents/l2m.py)."""

    def __post_init__(self) -> None:
        if isinstance(self.sac, dict):
            self.sac = SACConfig(**self.sac)
        if isinstance(self.plasticity, dict):
            self.plasticity = PlasticityConfig(**self.plasticity)
        if isinstance(self.dt, dict):
            self.dt = DTConfig(**self.dt)
        if isinstance(self.l2m, dict):
            self.l2m = L2MConfig(**self.l2m)
        for name in ("steps_per_task", "eval_every", "eval_episodes", "checkpoint_every"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.agent not in AGENTS:
            raise ConfigError(f"unknown agent '{self.agent}'; choose one of {', '.join(AGENTS)}")
        if self.agent != "sac" and self.method != "finetune":
            raise ConfigError(
                f"continual methods plug into SAC; agent '{self.agent}' takes --method finetune"
            )
        if self.agent == "l2m" and not self.l2m.pretrained:
            raise ConfigError("agent l2m needs --pretrained CHECKPOINT (made by crl pretrain)")
        if self.threads <= 0:
            raise ConfigError(f"threads must be positive, got {self.threads}")
        if self.video_every is not None and self.video_every <= 0:
            raise ConfigError(f"video_every must be positive, got {self.video_every}")
        if self.agent != "sac":
            return
        step = self.sac.update_every
        intervals = {name: getattr(self, name) for name in PERIODIC_OPTIONS}
        plasticity = self.plasticity
        for name in ("metrics_every", "reset_every", "rr_check_every"):
            if getattr(plasticity, name):
                intervals[name] = getattr(plasticity, name)
        for name, value in intervals.items():
            if value % step:
                raise ConfigError(f"{name} ({value}) must be a multiple of update_every ({step})")

    @property
    def method_label(self) -> str:
        """What reports group runs by: the method (SAC, with its replay ratio and reset
        when set: ``finetune+rr2``, ``l2+redo``), dt-<memory>, or l2m-<mode>."""
        if self.agent == "l2m":
            mode = self.l2m.l2m_mode
            if mode in ("full", "ewc", "l2p"):  # no modulator
                return f"l2m-{mode}"
            return f"l2m-{mode}-{self.l2m.modulator}"
        if self.agent == "dt":
            return f"dt-{self.dt.memory}"
        label = self.method
        if self.plasticity.replay_ratio != "fixed":
            label += f"+rr{self.plasticity.replay_ratio}"
        if self.plasticity.reset != "none":
            label += f"+{self.plasticity.reset}"
        return label

    @property
    def uses_task_id(self) -> bool:
        """Whether observations carry the one-hot task id."""
        if self.task_id_input is not None:
            return self.task_id_input
        return self.agent == "sac" and self.sac.multi_head

    @property
    def name(self) -> str:
        if self.run_name:
            return self.run_name
        sequence = (
            Path(self.sequence).stem
            if self.sequence.endswith((".yaml", ".yml"))
            else (self.sequence.replace(",", "+"))
        )
        if self.agent == "dt":
            return f"{sequence}-dt-{self.dt.memory}-s{self.seed}"
        if self.agent == "l2m":
            return f"{sequence}-{self.method_label}-s{self.seed}"
        return f"{sequence}-{self.method}-s{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save_yaml(self, path: Path) -> None:
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


#: What `crl train` with no arguments runs: 3 CW tasks, small budget, < 10 min on 2 cores.
QUICKSTART = {
    "sequence": "hammer,push-wall,faucet-close",
    "steps_per_task": 4_000,
    "eval_every": 1_000,
    "eval_episodes": 3,
    "checkpoint_every": 2_000,
    "run_name": "quickstart",
    "sac": {"random_steps": 1_000, "update_after": 500, "buffer_size": 100_000},
}


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML config (TrainConfig fields; SAC fields flat or under ``sac:``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option names to values")
    return data


def build_config(values: dict[str, Any]) -> TrainConfig:
    """TrainConfig from flat or nested values; unknown names are refused with the valid ones."""
    groups: dict[str, tuple[type, dict[str, Any]]] = {
        "sac": (SACConfig, {}),
        "plasticity": (PlasticityConfig, {}),
        "dt": (DTConfig, {}),
        "l2m": (L2MConfig, {}),
    }
    train_names = {f.name for f in fields(TrainConfig)} - set(groups)
    train: dict[str, Any] = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name in groups and isinstance(value, dict):
            cls, group_values = groups[name]
            for sub_key, sub_value in value.items():
                sub_name = sub_key.replace("-", "_")
                if sub_name not in {f.name for f in fields(cls)}:
                    raise ConfigError(f"unknown {name} option '{sub_key}'")
                group_values[sub_name] = sub_value
        elif name == "method_options":
            train[name] = dict(value or {})
        elif name in train_names:
            train[name] = value
        elif name.startswith(DT_PREFIX) and name.removeprefix(DT_PREFIX) in _field_names(DTConfig):
            groups["dt"][1][name.removeprefix(DT_PREFIX)] = value
        else:
            group = next(
                (values for cls, values in groups.values() if name in _field_names(cls)), None
            )
            if group is None:
                raise ConfigError(f"unknown option '{key}'; see 'crl train --help'")
            group[name] = value
    sac = groups["sac"][1]
    if "hidden_sizes" in sac:
        sac["hidden_sizes"] = tuple(sac["hidden_sizes"])
    try:
        dt = groups["dt"][1]
        if "memory_options" in dt:
            dt["memory_options"] = dict(dt["memory_options"] or {})
        return TrainConfig(
            **train,
            sac=SACConfig(**sac),
            plasticity=PlasticityConfig(**groups["plasticity"][1]),
            dt=DTConfig(**dt),
            l2m=L2MConfig(**groups["l2m"][1]),
        )
    except TypeError as error:
        raise ConfigError(str(error)) from None


def _field_names(cls: type) -> set[str]:
    return {f.name for f in fields(cls)}


# --- command-line options from the dataclasses ----------------------------------------------


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (the string right under each field) of a dataclass."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, following in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
        ):
            docs[node.target.id] = " ".join(str(following.value.value).split())
    return docs


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got '{text}'")


def _optional_float(text: str) -> float | None:
    return None if text.lower() in ("none", "") else float(text)


def _optional_int(text: str) -> int | None:
    return None if text.lower() in ("none", "") else int(text)


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One ``--kebab-case`` option per TrainConfig, SACConfig and PlasticityConfig field, help =
    its docstring.

    Defaults are None so that only options given on the command line override a file.
    """
    taken: set[str] = set()
    for cls, group_name in CONFIG_GROUPS:
        group = parser.add_argument_group(group_name)
        hints = get_type_hints(cls)
        docs = field_docs(cls)
        defaults = cls()
        for item in fields(cls):
            if item.name in ("sac", "plasticity", "dt", "l2m", "method_options", "memory_options"):
                continue
            hint = hints[item.name]
            default = getattr(defaults, item.name)
            dest = item.name if item.name not in taken else DT_PREFIX + item.name
            taken.add(dest)
            kwargs: dict[str, Any] = {"default": None, "dest": dest}
            if hint is bool:
                kwargs["type"] = _parse_bool
                kwargs["metavar"] = "BOOL"
            elif hint == tuple[int, ...]:
                kwargs["type"] = int
                kwargs["nargs"] = "+"
            elif hint == (int | None):
                kwargs["type"] = _optional_int
            elif hint == (bool | None):
                kwargs["type"] = _parse_bool
                kwargs["metavar"] = "BOOL"
            elif hint == (float | None):
                kwargs["type"] = _optional_float
            elif hint in (int, float):
                kwargs["type"] = hint
            kwargs["help"] = f"{docs.get(item.name, '')} (default: {default})"
            group.add_argument(f"--{dest.replace('_', '-')}", **kwargs)
        if cls is DTConfig:
            group.add_argument(
                "--memory-option",
                dest="memory_options",
                action="append",
                type=_method_option,
                metavar="KEY=VALUE",
                help=f"{field_docs(DTConfig)['memory_options']} Repeat for several.",
            )
        if cls is TrainConfig:
            group.add_argument(
                "--method-option",
                dest="method_options",
                action="append",
                type=_method_option,
                metavar="KEY=VALUE",
                help=f"{field_docs(TrainConfig)['method_options']} Repeat for several.",
            )


CONFIG_GROUPS: tuple[tuple[type, str], ...] = (
    (TrainConfig, "run"),
    (SACConfig, "SAC (agent sac)"),
    (PlasticityConfig, "plasticity (agent sac; agents/plasticity.py)"),
    (DTConfig, "Decision Transformer (agent dt; agents/dt.py)"),
    (L2MConfig, "L2M fine-tuning of a pretrained model (agent l2m; agents/l2m.py)"),
)
"""The option groups of ``crl train --help``, in order."""


def config_option_names() -> set[str]:
    """Every ``crl train`` destination that maps to a config field."""
    parser = argparse.ArgumentParser()
    add_config_options(parser)
    return {action.dest for action in parser._actions if action.dest != "help"}


def _method_option(text: str) -> tuple[str, Any]:
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got '{text}'")
    return key.strip().replace("-", "_"), yaml.safe_load(value)
