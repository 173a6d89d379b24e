"""Cue-delay-choice recall tasks, pure numpy: acting well needs memory over a long delay.

An episode has three phases.  For ``cue_steps`` steps one of ``num_cues`` cues is shown;
then for ``delay`` steps the cue is gone and a distractor stream plays; then one *choice*
step, the only step whose action matters: the choice is ``argmax(action)`` and earns reward
1.0 iff it names the cue.  The episode terminates right after the choice, so it always lasts
``cue_steps + delay + 1`` steps; it is never truncated.  A memoryless policy is at chance
(``1 / num_cues``).  The family exists to show a memory architecture (HCAM's chunked
attention) recalling where a sliding-window transformer fails (the delay exceeds its window)
and an LSTM degrades (long, noisy delays).

Observation (float32 ``Box(0, 1, (2 * num_cues + 3,))``), with ``C = num_cues``:

* ``obs[0:C]`` cue slot: the cue as a one-hot, during the cue phase only (zeros otherwise;
  no distractor ever appears here, which would make the task ambiguous);
* ``obs[C:2C]`` distractor slot: during the delay, a random one-hot "distractor cue" or
  zeros (see below); zeros in the other phases;
* ``obs[2C:2C+3]`` phase flags (cue, delay, choice), one-hot.  Nothing else tells the time
  to the choice: the delay flag stays constant until the choice flag appears.
* After the choice step the (terminal) observation is all zeros.

Distractors: the delay is cut into segments of ``distractor_hold`` steps (default 1: a new
distractor every step).  Each segment independently shows a uniformly random one-hot with
probability ``distractor_prob`` (default 0.5) and zeros otherwise.  ``distractor_prob=0``
turns distractors off.  The stream is drawn from the env's generator *after* the cue and
with the same number of draws whatever the cue is, so two episodes with the same seed and
different cues (``reset(options={"cue": k})``) have identical delay observations.

Names (parsed by pattern, any ``D >= 0``): ``recall-d<D>`` plus optional suffixes, in any
order, each at most once: ``-c<cues>`` (>= 2, default 4), ``-s<cue steps>`` (>= 1,
default 5), ``-p<distractor percent>`` (0..100, default 50), ``-h<distractor hold>``
(>= 1, default 1).  The canonical name lists the delay first, then non-default suffixes
in the order c, s, p, h: ``recall-d200-c8``, ``recall-d50-p0`` (no distractors).

Action: ``Box(-1, 1, (num_cues,))``.  Info: ``info["success"]`` every step (1.0 only on a
correct choice) and, on the final step, ``info["is_success"]`` (1.0 iff the choice was
correct) plus ``info["cue"]`` and ``info["choice"]`` for diagnostics, as envs/toy.py.

Seeding: ``reset(seed=s)`` seeds ``np_random``; ``make_recall_env(seed=s)`` makes the first
reset use ``s``.  Rendering: ``render_mode="rgb_array"`` draws four rows of cells (cue,
distractor, phase, then a progress bar that turns into the chosen cell, green if correct,
red if not).

Experts: the cue is gone at the choice step, so no function of the current observation can
be an expert.  `RecallExpert` is a small stateful callable on observations that remembers
the cue it saw (every cue-phase observation overwrites it, so a new episode resets it);
``RecallEnv.expert_action()`` is the privileged alternative that reads the env's hidden cue.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.registration import EnvSpec

from crlgym.envs.families import Expert, TaskFamily
from crlgym.errors import ConfigError

if TYPE_CHECKING:
    from crlgym.envs.make import EnvConfig

__all__ = [
    "RECALL_NAME_FORMAT",
    "RECALL_TASK_NAMES",
    "RecallEnv",
    "RecallExpert",
    "RecallFamily",
    "RecallNameError",
    "RecallSpec",
    "make_recall_env",
    "parse_recall_name",
    "recall_spaces",
]

RECALL_NAME_FORMAT = (
    "recall-d<delay>[-c<cues>][-s<cue steps>][-p<distractor percent>][-h<distractor hold>]"
)

#: Phase flag offsets inside the phase block.
_CUE, _DELAY, _CHOICE = 0, 1, 2
#: Distractor segments drawn per refill; lazily, so that a huge delay costs nothing up front.
_DISTRACTOR_CHUNK = 256

_CELL = 16
_BG_COLOR = np.array([30, 30, 40], dtype=np.uint8)
_EMPTY_COLOR = np.array([60, 60, 75], dtype=np.uint8)
_CUE_COLOR = np.array([40, 200, 80], dtype=np.uint8)
_DISTRACTOR_COLOR = np.array([255, 140, 20], dtype=np.uint8)
_PHASE_COLORS = (
    np.array([60, 120, 255], dtype=np.uint8),
    np.array([200, 200, 200], dtype=np.uint8),
    np.array([240, 220, 40], dtype=np.uint8),
)
_PROGRESS_COLOR = np.array([120, 120, 140], dtype=np.uint8)
_WRONG_COLOR = np.array([220, 40, 40], dtype=np.uint8)


class RecallNameError(ValueError):
    """A ``recall-...`` name that does not parse or names invalid parameters."""


@dataclass(frozen=True)
class RecallSpec:
    """The parameters a recall task name encodes."""

    delay: int
    num_cues: int = 4
    cue_steps: int = 5
    distractor_percent: int = 50
    distractor_hold: int = 1

    def __post_init__(self) -> None:
        if self.delay < 0:
            raise RecallNameError(f"delay must be >= 0, got {self.delay}")
        if self.num_cues < 2:
            raise RecallNameError(f"needs at least 2 cues (c >= 2), got c{self.num_cues}")
        if self.cue_steps < 1:
            raise RecallNameError(f"the cue must show for at least 1 step, got s{self.cue_steps}")
        if not 0 <= self.distractor_percent <= 100:
            raise RecallNameError(
                f"distractor percent must lie in 0..100, got p{self.distractor_percent}"
            )
        if self.distractor_hold < 1:
            raise RecallNameError(f"distractor hold must be >= 1, got h{self.distractor_hold}")

    @property
    def name(self) -> str:
        """Canonical task name: the delay, then the non-default parameters."""
        parts = [f"recall-d{self.delay}"]
        defaults = RecallSpec(0)
        for letter, field in _SUFFIXES.items():
            value = getattr(self, field)
            if value != getattr(defaults, field):
                parts.append(f"{letter}{value}")
        return "-".join(parts)

    @property
    def episode_length(self) -> int:
        """Steps of every episode: cue phase, delay, and the choice step."""
        return self.cue_steps + self.delay + 1

    @property
    def distractor_prob(self) -> float:
        return self.distractor_percent / 100.0


#: Name suffix letter -> `RecallSpec` field, in canonical order.
_SUFFIXES = {
    "c": "num_cues",
    "s": "cue_steps",
    "p": "distractor_percent",
    "h": "distractor_hold",
}
_TOKEN = re.compile(r"([dcsph])(\d+)")

#: Representative tasks (registered with gymnasium and listed by ``crl list tasks``).
RECALL_TASK_NAMES: tuple[str, ...] = tuple(f"recall-d{d}" for d in (0, 10, 50, 200, 1000))


def parse_recall_name(name: str) -> RecallSpec:
    """The `RecallSpec` of a ``recall-d<D>...`` name; `RecallNameError` says what is wrong.

    Suffix letters and their meaning: `RECALL_NAME_FORMAT` and the module docstring.
    """
    tokens = name.strip().split("-")
    if tokens[0] != "recall":
        raise RecallNameError("not a recall task name")
    if len(tokens) < 2:
        raise RecallNameError("the delay d<D> is missing")
    # Messages below name the problem only; callers add the format once.
    values: dict[str, int] = {}
    for token in tokens[1:]:
        match = _TOKEN.fullmatch(token)
        if match is None:
            raise RecallNameError(f"cannot read '{token}'")
        letter = match.group(1)
        if letter in values:
            raise RecallNameError(f"'{letter}' is given twice")
        values[letter] = int(match.group(2))
    if "d" not in values:
        raise RecallNameError("the delay d<D> is missing")
    fields = {_SUFFIXES[letter]: value for letter, value in values.items() if letter != "d"}
    return RecallSpec(values["d"], **fields)


def recall_spaces(num_cues: int) -> tuple[spaces.Box, spaces.Box]:
    """Observation and action spaces of a recall task with ``num_cues`` cues."""
    return (
        spaces.Box(0.0, 1.0, shape=(2 * num_cues + 3,), dtype=np.float32),
        spaces.Box(-1.0, 1.0, shape=(num_cues,), dtype=np.float32),
    )


class RecallEnv(gym.Env):
    """Remember a cue over a delay with distractors, then name it; see the module docstring.

    Args:
        delay: steps between the last cue step and the choice step (>= 0).
        num_cues: number of possible cues (>= 2); chance is ``1 / num_cues``.
        cue_steps: steps the cue is shown (>= 1).
        distractor_prob: probability that a delay segment shows a distractor (0 = off).
        distractor_hold: steps each distractor segment lasts (1 = changes every step).
        render_mode: None or "rgb_array".
        width, height: frame size; None = the natural size (16 pixels per cell).
        task_name: the name the env was built from (for display).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}  # noqa: RUF012 - gymnasium declares it an instance attribute

    def __init__(
        self,
        delay: int = 50,
        *,
        num_cues: int = 4,
        cue_steps: int = 5,
        distractor_prob: float = 0.5,
        distractor_hold: int = 1,
        render_mode: str | None = None,
        width: int | None = None,
        height: int | None = None,
        task_name: str | None = None,
    ) -> None:
        super().__init__()
        if delay < 0:
            raise ValueError(f"delay must be >= 0, got {delay}")
        if num_cues < 2:
            raise ValueError(f"num_cues must be >= 2, got {num_cues}")
        if cue_steps < 1:
            raise ValueError(f"cue_steps must be >= 1, got {cue_steps}")
        if not 0.0 <= distractor_prob <= 1.0:
            raise ValueError(f"distractor_prob must lie in [0, 1], got {distractor_prob}")
        if distractor_hold < 1:
            raise ValueError(f"distractor_hold must be >= 1, got {distractor_hold}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode {render_mode!r} not supported; use one of "
                f"{self.metadata['render_modes']} or None"
            )
        self.delay = int(delay)
        self.num_cues = int(num_cues)
        self.cue_steps = int(cue_steps)
        self.distractor_prob = float(distractor_prob)
        self.distractor_hold = int(distractor_hold)
        self.render_mode = render_mode
        self.task_name = task_name
        self.episode_length = self.cue_steps + self.delay + 1
        self.observation_space, self.action_space = recall_spaces(self.num_cues)
        self._obs_dim = 2 * self.num_cues + 3
        self._phase_offset = 2 * self.num_cues
        self._choice_t = self.cue_steps + self.delay
        self._frame_size = (height, width)

        # Episode state; _t < 0 until the first reset.
        self._t = -1
        self._cue = 0
        self._choice: int | None = None
        self._distractors: list[int] = []  # per delay segment: distractor index or -1
        self._first_reset_seed: int | None = None
        self._pixel_rows: np.ndarray | None = None
        self._pixel_cols: np.ndarray | None = None

    # ------------------------------------------------------------------ properties
    @property
    def cue(self) -> int:
        """The current episode's cue (hidden state; not part of the delay observations)."""
        if self._t < 0:
            raise RuntimeError("call reset() first")
        return self._cue

    # ------------------------------------------------------------------ gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is None and self._first_reset_seed is not None:
            seed = self._first_reset_seed
        self._first_reset_seed = None
        super().reset(seed=seed)
        # Drawn even when options fix the cue, so the distractor stream that follows is the
        # same for every cue under one seed.
        cue = int(self.np_random.integers(self.num_cues))
        if options is not None and options.get("cue") is not None:
            cue = int(options["cue"])
            if not 0 <= cue < self.num_cues:
                raise ValueError(f"cue {cue} outside 0..{self.num_cues - 1}")
        self._cue = cue
        self._t = 0
        self._choice = None
        self._distractors = []
        return self._observation(0), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        t = self._t
        if t < 0:
            raise RuntimeError("call reset() before step()")
        if t > self._choice_t:
            raise RuntimeError("the episode ended at the choice step; call reset()")
        reward = 0.0
        terminated = t == self._choice_t
        info: dict[str, Any]
        if terminated:
            # Only the choice step reads the action, which keeps the other steps cheap.
            values = np.asarray(action, dtype=np.float64).reshape(-1)
            if values.shape != (self.num_cues,):
                raise ValueError(f"action must have {self.num_cues} values, got {values.shape}")
            if np.isnan(values).any():
                raise ValueError(f"action contains NaN: {action}")
            self._choice = int(values.argmax())
            correct = 1.0 if self._choice == self._cue else 0.0
            reward = correct
            info = {
                "success": correct,
                "is_success": correct,
                "cue": self._cue,
                "choice": self._choice,
            }
        else:
            info = {"success": 0.0}
        self._t = t + 1
        return self._observation(t + 1), reward, terminated, False, info

    def _observation(self, t: int) -> np.ndarray:
        obs = np.zeros(self._obs_dim, dtype=np.float32)
        if t < self.cue_steps:
            obs[self._cue] = 1.0
            obs[self._phase_offset + _CUE] = 1.0
        elif t < self._choice_t:
            distractor = self._distractor((t - self.cue_steps) // self.distractor_hold)
            if distractor >= 0:
                obs[self.num_cues + distractor] = 1.0
            obs[self._phase_offset + _DELAY] = 1.0
        elif t == self._choice_t:
            obs[self._phase_offset + _CHOICE] = 1.0
        return obs

    def _distractor(self, segment: int) -> int:
        """Distractor index of a delay segment (-1 = none), drawn lazily in chunks."""
        if self.distractor_prob == 0.0:
            return -1
        while segment >= len(self._distractors):
            rng = self.np_random
            which = rng.integers(self.num_cues, size=_DISTRACTOR_CHUNK)
            if self.distractor_prob < 1.0:
                which[rng.random(_DISTRACTOR_CHUNK) >= self.distractor_prob] = -1
            self._distractors.extend(which.tolist())
        return self._distractors[segment]

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        columns = max(self.num_cues, 3)
        grid = np.empty((4 * _CELL, columns * _CELL, 3), dtype=np.uint8)
        grid[:] = _BG_COLOR

        def cell(row: int, column: int, color: np.ndarray) -> None:
            top, left = row * _CELL, column * _CELL
            grid[top + 1 : top + _CELL - 1, left + 1 : left + _CELL - 1] = color

        obs = self._observation(self._t) if self._t >= 0 else np.zeros(self._obs_dim)
        for k in range(self.num_cues):
            cell(0, k, _CUE_COLOR if obs[k] else _EMPTY_COLOR)
            cell(1, k, _DISTRACTOR_COLOR if obs[self.num_cues + k] else _EMPTY_COLOR)
        for phase in range(3):
            on = obs[self._phase_offset + phase]
            cell(2, phase, _PHASE_COLORS[phase] if on else _EMPTY_COLOR)
        if self._choice is not None:
            cell(3, self._choice, _CUE_COLOR if self._choice == self._cue else _WRONG_COLOR)
        elif self._t >= 0:
            filled = round(grid.shape[1] * self._t / self.episode_length)
            grid[3 * _CELL + 4 : 4 * _CELL - 4, :filled] = _PROGRESS_COLOR
        return self._resize(grid)

    def _resize(self, grid: np.ndarray) -> np.ndarray:
        height, width = self._frame_size
        if height is None and width is None:
            return grid
        if self._pixel_rows is None or self._pixel_cols is None:
            rows_out = height or grid.shape[0]
            cols_out = width or grid.shape[1]
            self._pixel_rows = np.arange(rows_out) * grid.shape[0] // rows_out
            self._pixel_cols = np.arange(cols_out) * grid.shape[1] // cols_out
        return grid[self._pixel_rows][:, self._pixel_cols]

    # ------------------------------------------------------------------ expert
    def expert_action(self, observation: Any = None) -> np.ndarray:
        """Privileged expert: +1 for the current episode's hidden cue, -1 elsewhere.

        Ignores ``observation`` (accepted so the signature matches other experts); use
        `RecallExpert` for an expert that sees only observations.
        """
        return _cue_action(self.cue, self.num_cues)


def _cue_action(cue: int, num_cues: int) -> np.ndarray:
    action = np.full(num_cues, -1.0, dtype=np.float32)
    action[cue] = 1.0
    return action


class RecallExpert:
    """Observation-only expert for recall tasks: remembers the cue of the running episode.

    Call it on each native observation of an episode, in order, from the reset observation
    on.  Every cue-phase observation (re)records the cue, so a new episode resets it by
    itself; `reset` forgets it explicitly.  Before any cue was seen it raises RuntimeError
    (it would otherwise guess).  At the choice step the action is +1 on the cue and -1
    elsewhere; before it, all zeros.  Pointing at the cue on every step would put the cue into
    the recorded actions, and a sequence model could then copy its own previous action instead
    of remembering: the data must carry the cue only in the cue-phase observations.
    """

    def __init__(self, num_cues: int) -> None:
        self.num_cues = int(num_cues)
        self._cue: int | None = None

    def reset(self) -> None:
        """Forget the remembered cue."""
        self._cue = None

    @property
    def remembered_cue(self) -> int | None:
        return self._cue

    def __call__(self, observation: Any) -> np.ndarray:
        obs = np.asarray(observation)
        expected = 2 * self.num_cues + 3
        if obs.shape != (expected,):
            raise ValueError(
                f"RecallExpert takes one native observation of shape ({expected},), got {obs.shape}"
            )
        if obs[2 * self.num_cues + _CUE] > 0.5:
            self._cue = int(obs[: self.num_cues].argmax())
        if self._cue is None:
            raise RuntimeError("no cue seen yet: feed the expert every observation from reset")
        if obs[2 * self.num_cues + _CHOICE] < 0.5:
            return np.zeros(self.num_cues, dtype=np.float32)
        return _cue_action(self._cue, self.num_cues)


def make_recall_env(
    name: str,
    *,
    render_mode: str | None = None,
    seed: int | None = None,
    width: int | None = None,
    height: int | None = None,
) -> RecallEnv:
    """Create the recall task ``name`` (any name `parse_recall_name` accepts).

    ``seed`` seeds the first ``reset()`` and the spaces.  The env gets an ``EnvSpec`` so
    that ``gymnasium.make(env.spec)`` recreates it.
    """
    spec = parse_recall_name(name)
    env = RecallEnv(
        spec.delay,
        num_cues=spec.num_cues,
        cue_steps=spec.cue_steps,
        distractor_prob=spec.distractor_prob,
        distractor_hold=spec.distractor_hold,
        render_mode=render_mode,
        width=width,
        height=height,
        task_name=spec.name,
    )
    env.spec = EnvSpec(
        id=spec.name,
        entry_point="crlgym.envs.recall:make_recall_env",
        kwargs={"name": spec.name, "width": width, "height": height},
    )
    if seed is not None:
        env._first_reset_seed = int(seed)
        env.action_space.seed(int(seed))
        env.observation_space.seed(int(seed))
    return env


class RecallFamily(TaskFamily):
    """``recall-d<D>...`` names, parsed by pattern (`parse_recall_name`); each task sets its
    own episode length (cue + delay + choice)."""

    domain = "recall"
    description = "cue-delay-choice memory tasks with distractors (pure numpy)"

    def canonical(self, name: str) -> str | None:
        cleaned = name.strip()
        if cleaned != "recall" and not cleaned.startswith("recall-"):
            return None
        try:
            return parse_recall_name(name).name
        except RecallNameError as error:
            detail = f"{error}; recall tasks are named {RECALL_NAME_FORMAT}"
            raise self.unknown_task(name, detail=detail) from None

    def names(self) -> tuple[str, ...]:
        return RECALL_TASK_NAMES

    def make(self, name: str, config: EnvConfig, seed: int | None) -> gym.Env:
        spec = parse_recall_name(name)
        if config.episode_length is not None and config.episode_length < spec.episode_length:
            # Truncating before the choice step would make every episode unrewardable.
            raise ConfigError(
                f"{name} lasts {spec.episode_length} steps (cue {spec.cue_steps} + delay "
                f"{spec.delay} + choice 1) but episode_length is {config.episode_length}; leave "
                f"episode_length unset (the task sets it) or make it at least "
                f"{spec.episode_length}"
            )
        return make_recall_env(
            name,
            render_mode=config.render_mode,
            seed=seed,
            width=config.width,
            height=config.height,
        )

    def default_episode_length(self, name: str) -> int:
        return parse_recall_name(name).episode_length

    def expert(self, name: str) -> Expert:
        return RecallExpert(parse_recall_name(name).num_cues)

    def spaces(self, name: str) -> tuple[spaces.Box, spaces.Box]:
        return recall_spaces(parse_recall_name(name).num_cues)
