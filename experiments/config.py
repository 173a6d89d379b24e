"""Typed run configuration: `TrainConfig` (with `crlgym.agents.sac.SACConfig` inside), YAML files,
and the command-line options generated from the fields and their docstrings."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import inspect
import itertools
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import yaml

from crlgym.agents.dt import DTConfig
from crlgym.agents.l2m import L2MConfig
from crlgym.agents.plasticity import PlasticityConfig
from crlgym.agents.sac import SACConfig
from crlgym.errors import ConfigError
from crlgym.memory.datasets import DEFAULT_DATA_DIR

#: Command-line prefix of DTConfig fields whose names SAC's options already use
#: (``--dt-learning-rate``); YAML files nest them under ``dt:`` instead.
DT_PREFIX = "dt_"

#: ``--agent`` choices (experiments/learners.py).
AGENTS = ("sac", "dt", "l2m")

#: Intervals that must fall on update phases (multiples of SAC's update_every).
PERIODIC_OPTIONS = ("steps_per_task", "eval_every", "checkpoint_every")

#: The most evaluation episodes per task and evaluation (``eval_episodes``,
#: ``eval_deterministic_episodes``, ``crl eval --episodes``): more would make one evaluation
#: take hours; a larger value is refused rather than run.
MAX_EVAL_EPISODES = 1000


def check_run_name(name: str) -> None:
    """Refuse a run name that is not one plain directory name (it would point elsewhere)."""
    if name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ConfigError(
            f"run name {name!r} is not a plain name; give --run-name a name without "
            "'/' (not '.', '..' or empty), e.g. --run-name my-run"
        )


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
    data_dir: str = str(DEFAULT_DATA_DIR)
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
        if self.seed < 0:
            raise ConfigError(f"seed must be zero or positive, got {self.seed}")
        if self.eval_deterministic_episodes < 0:
            raise ConfigError(
                "eval_deterministic_episodes must be zero or positive, "
                f"got {self.eval_deterministic_episodes}"
            )
        for name in ("eval_episodes", "eval_deterministic_episodes"):
            if getattr(self, name) > MAX_EVAL_EPISODES:
                raise ConfigError(
                    f"{name} ({getattr(self, name)}) is above the limit of {MAX_EVAL_EPISODES} "
                    "episodes per task; give a smaller value"
                )
        if self.episode_length is not None and self.episode_length <= 0:
            raise ConfigError(f"episode_length must be positive, got {self.episode_length}")
        if self.video_size <= 0:
            raise ConfigError(f"video_size must be positive, got {self.video_size}")
        if self.run_name is not None:
            check_run_name(self.run_name)
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
        problem = "is not a file" if path.exists() else "does not exist"
        raise ConfigError(f"config file {path} {problem}; give the path of a YAML file")
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(
            f"cannot read config file {path} ({error.strerror}); check its permissions"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file; give a YAML config file") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        problem = " ".join(str(error).split())
        raise ConfigError(f"{path}: not valid YAML ({problem})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option names to values")
    return data


def build_config(values: dict[str, Any]) -> TrainConfig:
    """TrainConfig from flat or nested values; unknown names are refused with the valid ones.

    Keys are field names, ``-`` or ``_`` alike: TrainConfig's own, a section's nested under
    it (``sac: {learning_rate: ...}``), or a section's given flat (``learning_rate``: the
    first section that has the name, in SECTIONS order; ``dt_learning_rate``: DT's).
    """
    sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    train_names = _field_names(TrainConfig) - set(SECTIONS)
    train: dict[str, Any] = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name in SECTIONS and isinstance(value, dict):
            for sub_key, sub_value in value.items():
                sub_name = sub_key.replace("-", "_")
                if sub_name not in _field_names(SECTIONS[name]):
                    hint = _did_you_mean(sub_name, _field_names(SECTIONS[name]))
                    raise ConfigError(f"unknown {name} option '{sub_key}'{hint}")
                sections[name][sub_name] = sub_value
        elif name == "method_options":
            if value is not None and not isinstance(value, dict):
                raise ConfigError(
                    f"config option 'method_options' must be a mapping of KEY: VALUE, "
                    f"got {value!r} ({type(value).__name__})"
                )
            train[name] = dict(value or {})
        elif name in train_names:
            train[name] = value
        elif name.startswith(DT_PREFIX) and name.removeprefix(DT_PREFIX) in _field_names(DTConfig):
            sections["dt"][name.removeprefix(DT_PREFIX)] = value
        else:
            section = next((s for s, cls in SECTIONS.items() if name in _field_names(cls)), None)
            if section is None:
                hint = _did_you_mean(name, config_option_names() | set(SECTIONS))
                raise ConfigError(f"unknown option '{key}'{hint}; see 'crl train --help'")
            sections[section][name] = value
    _check_types(TrainConfig, train, "")
    for section, cls in SECTIONS.items():
        _check_types(cls, sections[section], f"{section}.")
    sac = sections["sac"]
    if "hidden_sizes" in sac:
        sac["hidden_sizes"] = tuple(sac["hidden_sizes"])
    dt = sections["dt"]
    if "memory_options" in dt:
        dt["memory_options"] = dict(dt["memory_options"] or {})
    try:
        return TrainConfig(
            **train,
            sac=SACConfig(**sac),
            plasticity=PlasticityConfig(**sections["plasticity"]),
            dt=DTConfig(**dt),
            l2m=L2MConfig(**sections["l2m"]),
        )
    except TypeError as error:
        raise ConfigError(str(error)) from None


def _check_types(cls: type, values: dict[str, Any], where: str) -> None:
    """Refuse a value of the wrong type (a YAML string where a number is due), naming the key
    and the expected type, instead of failing later on a comparison."""
    hints = _type_hints(cls)
    for name, value in values.items():
        expected = _type_name(hints[name], value)
        if expected is not None:
            raise ConfigError(
                f"config option '{where}{name}' must be {expected}, got {value!r} "
                f"({type(value).__name__})"
            )


def _type_name(hint: Any, value: Any) -> str | None:
    """None when ``value`` fits ``hint``, else what was expected, in words."""
    args = get_args(hint)
    if type(None) in args:
        if value is None:
            return None
        (hint,) = (arg for arg in args if arg is not type(None))
        expected = _type_name(hint, value)
        return None if expected is None else f"{expected} or null"
    if hint is bool:
        return None if isinstance(value, bool) else "true or false"
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if hint is float:
        fits = isinstance(value, int | float) and not isinstance(value, bool)
        return None if fits else "a number"
    if hint is str:
        return None if isinstance(value, str) else "a string"
    if get_origin(hint) is Literal:
        return None if value in args else "one of " + ", ".join(map(str, args))
    if get_origin(hint) is tuple and args[1:] == (Ellipsis,):
        if isinstance(value, list | tuple) and all(_type_name(args[0], v) is None for v in value):
            return None
        return f"a list of {_type_name(args[0], object()) or 'values'}"
    if get_origin(hint) is dict or hint is dict:
        return None if isinstance(value, dict) or value is None else "a mapping of KEY: VALUE"
    return None


def _did_you_mean(name: str, valid: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(valid), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _field_names(cls: type) -> set[str]:
    return {f.name for f in fields(cls)}


# --- command-line options from the dataclasses ----------------------------------------------
#
# Every config field is one ``--kebab-case`` option whose help is the field's attribute
# docstring. The options are plain argparse, in one argument group per section of the config
# (the README's "Why argparse, not a dataclass-CLI library" has the measured reasons).

#: The sections of TrainConfig, as YAML nests them (``sac:``) -> their dataclass.
SECTIONS: dict[str, type] = {
    "sac": SACConfig,
    "plasticity": PlasticityConfig,
    "dt": DTConfig,
    "l2m": L2MConfig,
}

#: Dict fields given as a repeatable ``KEY=VALUE`` option instead of one option each.
KEY_VALUE_OPTIONS = {"method_options": "--method-option", "memory_options": "--memory-option"}


@dataclass(frozen=True)
class OptionGroup:
    """One titled group of ``crl train --help``: fields of TrainConfig or of one section."""

    title: str
    section: str | None = None
    """The TrainConfig field of the section (``sac``); None: TrainConfig's own fields."""
    names: tuple[str, ...] | None = None
    """Its fields, in order; None: every field that no other group lists."""
    prefix: str = ""
    """Prefix of the option (and flat YAML key) of a field whose name an earlier group
    already uses (DT's ``learning_rate`` -> ``--dt-learning-rate``)."""


#: The option groups of ``crl train --help``, in order.
OPTION_GROUPS: tuple[OptionGroup, ...] = (
    OptionGroup("run"),
    OptionGroup("methods (agent sac; crl list methods)", names=("method", "method_options")),
    OptionGroup("SAC (agent sac)", "sac"),
    OptionGroup("plasticity (agent sac; agents/plasticity.py)", "plasticity"),
    OptionGroup("Decision Transformer (agent dt; agents/dt.py)", "dt", prefix=DT_PREFIX),
    OptionGroup("L2M (agent l2m: fine-tuning of a pretrained model; agents/l2m.py)", "l2m"),
)


@dataclass(frozen=True)
class ConfigOption:
    """The command-line option of one config field."""

    flag: str
    """``--steps-per-task``, ``--dt-learning-rate``, ``--method-option``."""
    dest: str
    """argparse destination, also the field's flat YAML key (``dt_learning_rate``)."""
    section: str | None
    """Its section (``dt``), None for a TrainConfig field."""
    name: str
    """The field's name in its dataclass (``learning_rate``)."""
    group: OptionGroup


@cache
def config_options() -> tuple[ConfigOption, ...]:
    """Every config option of ``crl train``, in help order."""
    options: list[ConfigOption] = []
    taken: set[str] = set()
    for group in OPTION_GROUPS:
        cls = TrainConfig if group.section is None else SECTIONS[group.section]
        for name in _group_fields(group, cls):
            dest = name
            if dest in taken:
                if not group.prefix:
                    raise TypeError(
                        f"{cls.__name__}.{name}: option --{name} is taken; set a prefix"
                    )
                dest = group.prefix + name
            taken.add(dest)
            flag = KEY_VALUE_OPTIONS.get(name, "--" + dest.replace("_", "-"))
            options.append(ConfigOption(flag, dest, group.section, name, group))
    return tuple(options)


def _group_fields(group: OptionGroup, cls: type) -> tuple[str, ...]:
    names = [f.name for f in fields(cls) if cls is not TrainConfig or f.name not in SECTIONS]
    if group.names is not None:
        unknown = set(group.names) - set(names)
        if unknown:
            raise TypeError(f"option group {group.title!r}: {cls.__name__} has no {unknown}")
        return group.names
    listed = {
        name
        for other in OPTION_GROUPS
        if other.section == group.section and other.names is not None
        for name in other.names
    }
    return tuple(name for name in names if name not in listed)


def config_option_names() -> set[str]:
    """Every ``crl train`` destination that maps to a config field."""
    return {option.dest for option in config_options()}


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One ``--kebab-case`` option per config field, in one argument group per OptionGroup,
    help = the field's docstring.

    Defaults are None so that only options given on the command line override a file.
    """
    groups: dict[str, Any] = {}
    for option in config_options():
        if option.group.title not in groups:
            groups[option.group.title] = parser.add_argument_group(option.group.title)
        cls = TrainConfig if option.section is None else SECTIONS[option.section]
        doc = field_docs(cls)[option.name]
        if option.name in KEY_VALUE_OPTIONS:
            kwargs: dict[str, Any] = {
                "action": "append",
                "type": _key_value,
                "metavar": "KEY=VALUE",
                "help": f"{doc} Repeat for several.",
            }
        else:
            kwargs = _argument_type(_type_hints(cls)[option.name], f"{cls.__name__}.{option.name}")
            kwargs["help"] = f"{doc} (default: {getattr(_defaults(cls), option.name)})"
        groups[option.group.title].add_argument(
            option.flag, dest=option.dest, default=None, **kwargs
        )


@cache
def _defaults(cls: type) -> Any:
    return cls()


@cache
def _type_hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _argument_type(hint: Any, where: str) -> dict[str, Any]:
    """argparse's type/nargs/metavar/choices for a field's type hint."""
    if hint is bool:
        return {"type": parse_bool, "metavar": "BOOL"}
    if hint == (bool | None):
        return {"type": _optional(parse_bool), "metavar": "BOOL"}
    if hint in (int, float):
        return {"type": hint}
    if hint in (int | None, float | None):
        (inner,) = (arg for arg in get_args(hint) if arg is not type(None))
        return {"type": _optional(inner)}
    if hint in (str, str | None):
        return {}
    if get_origin(hint) is tuple and get_args(hint)[1:] == (Ellipsis,):
        return {"type": get_args(hint)[0], "nargs": "+"}
    if get_origin(hint) is Literal:
        return {"choices": get_args(hint)}
    raise TypeError(f"{where}: no command-line form for type {hint}; add one in {__name__}")


def parse_bool(text: str) -> bool:
    """``true/false``, ``yes/no``, ``on/off`` or ``1/0`` (any case)."""
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got '{text}'")


def _optional(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse``, with ``none`` (any case) or an empty value giving None."""

    def parse_optional(text: str) -> Any:
        return None if text.lower() in ("none", "") else parse(text)

    parse_optional.__name__ = getattr(parse, "__name__", "value")  # argparse's error names it
    return parse_optional


def _key_value(text: str) -> tuple[str, Any]:
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got '{text}'")
    return key.strip().replace("-", "_"), yaml.safe_load(value)


# --- field help: attribute docstrings ------------------------------------------------------


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The help text of every field of a dataclass, whitespace collapsed.

    ``field(metadata={"help": ...})`` if a field has it, else its attribute docstring (the
    string literal right under the field, the convention of this project), read from the
    source of its module with `ast` -- the class found by its qualified name, fields of
    dataclass bases included. A field whose source cannot be read (no .py shipped, a class
    made at run time) gets "" rather than failing the command line.
    """
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            docs.update(_attribute_docstrings(klass))
    return {
        item.name: " ".join(str(item.metadata.get("help", docs.get(item.name, ""))).split())
        for item in fields(cls)
    }


def _attribute_docstrings(cls: type) -> dict[str, str]:
    tree = _module_tree(cls.__module__)
    scope: list[ast.stmt] = tree.body if tree is not None else []
    node: ast.ClassDef | None = None
    for part in cls.__qualname__.split("."):  # "<locals>" finds nothing: no docs
        # the last definition of a name is the one in force
        node = next(
            (n for n in reversed(scope) if isinstance(n, ast.ClassDef) and n.name == part), None
        )
        if node is None:
            return {}
        scope = node.body
    docs: dict[str, str] = {}
    for statement, following in itertools.pairwise(scope):
        if (
            isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[statement.target.id] = inspect.cleandoc(following.value.value)
    return docs


@cache
def _module_tree(module_name: str) -> ast.Module | None:
    module = sys.modules.get(module_name)
    try:
        source = inspect.getsource(module) if module is not None else None
    except (OSError, TypeError):  # no source shipped, or a built-in module
        return None
    return ast.parse(source) if source else None
