"""The ``crl`` command line.

User mistakes (unknown task, bad value, a path that cannot be used) print one message and
exit with status 2; nothing already written is touched. Ctrl-C prints one line (for crl train:
the command that continues the run) and exits with status 130.
"""

from __future__ import annotations

import argparse
import difflib
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import crlgym
from crlgym import envs
from crlgym.errors import CrlgymError
from crlgym.experiments.config import (
    MAX_EVAL_EPISODES,
    TrainConfig,
    add_config_options,
    config_option_names,
)
from crlgym.experiments.report import add_report_parser

_CONFIG_OPTION_NAMES = config_option_names()

DEMO_TASKS = ("hammer", "push-wall", "faucet-close")


def _cmd_list(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    what = args.what
    if what in ("all", "sequences"):
        table = Table(title="sequences (crl ... --sequence NAME)")
        table.add_column("name")
        table.add_column("tasks", justify="right")
        table.add_column("description")
        for name, tasks in envs.SEQUENCES.items():
            table.add_row(name, str(len(tasks)), envs.SEQUENCE_DESCRIPTIONS[name])
        table.add_row(
            "a,b,c", "", "any comma-separated task list, or a YAML file (docs/sequences.md)"
        )
        console.print(table)
    if what in ("all", "methods"):
        from crlgym.agents.methods import METHODS, method_options

        table = Table(title="methods (crl train --method NAME)")
        table.add_column("name")
        table.add_column("description")
        table.add_column("options (--method-option KEY=VALUE), defaults")
        for name, method in METHODS.items():
            options = ", ".join(f"{o.name}={o.default}" for o in method_options(name))
            table.add_row(name, method.description, options or "none")
        console.print(table)
    if what in ("all", "tasks"):
        table = Table(title="tasks")
        table.add_column("domain")
        table.add_column("count", justify="right")
        table.add_column("names")
        groups: dict[str, list[str]] = {}  # domains in the task families' order
        for task in envs.all_tasks():
            groups.setdefault(envs.task_domain(task), []).append(task)
        for domain, names in groups.items():
            table.add_row(domain, str(len(names)), ", ".join(names))
        console.print(table)


def _cmd_demo(args: argparse.Namespace) -> None:
    """Scripted experts on the first CW10 tasks, with videos and success rates."""
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from crlgym.experiments.video import write_video

    console = Console()
    config = envs.EnvConfig(render_mode="rgb_array", width=args.size, height=args.size)
    sequence = envs.TaskSequence(",".join(args.tasks), args.tasks, config)
    table = Table(title=f"scripted experts on {sequence.name} ({args.episodes} episodes each)")
    for column in ("task", "success", "mean return", "video"):
        table.add_column(column, overflow="fold")
    started = time.perf_counter()
    for index, task in enumerate(sequence.task_names):
        policy = envs.expert_policy(task)
        env = sequence.make_env(index, seed=args.seed)
        successes: list[float] = []
        returns: list[float] = []
        frames: list[np.ndarray] = []
        for episode in range(args.episodes):
            observation, _ = env.reset(seed=args.seed + episode)
            total, done = 0.0, False
            info: dict[str, Any] = {}
            record = episode == 0
            while not done:
                if record:
                    frames.append(np.asarray(env.render()))  # rgb_array: one frame
                observation, reward, terminated, truncated, info = env.step(policy(observation))
                total += float(reward)
                done = terminated or truncated
            successes.append(float(info.get("is_success", info.get("normalized_score", 0.0))))
            returns.append(total)
        video = write_video(
            Path(args.video_dir) / task / "expert_episode_0.mp4",
            frames,
            fps=env.metadata["render_fps"],
        )
        env.close()
        table.add_row(task, f"{np.mean(successes):.2f}", f"{np.mean(returns):.1f}", str(video))
    console.print(table)
    console.print(f"done in {time.perf_counter() - started:.1f}s; videos under {args.video_dir}/")


def _cmd_train(args: argparse.Namespace) -> None:
    from crlgym.experiments.runner import run_training

    config = config_from_args(args)
    args.interrupted_run = Path(config.runs_dir) / config.name  # for Ctrl-C's message
    started = time.perf_counter()
    run_dir, results = run_training(config, resume=bool(args.resume), overwrite=args.overwrite)
    _print_run_summary(run_dir, results, time.perf_counter() - started)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run configuration of ``crl train``: the resumed run's, or the --config file's (else
    the quick start's when no --sequence is given, else the defaults) with the options given
    on the command line on top."""
    from crlgym.experiments.config import QUICKSTART, build_config, load_config_file
    from crlgym.experiments.runner import load_run_config

    options = {
        name: value
        for name, value in vars(args).items()
        if name in _CONFIG_OPTION_NAMES and value is not None
    }
    for name in ("method_options", "memory_options"):
        if name in options:
            options[name] = dict(options[name])
    if args.resume:
        resume = Path(args.resume)
        if resume.name in ("", ".", ".."):  # `--resume .` from inside the run
            resume = resume.resolve()
        config = load_run_config(resume)
        if Path(config.runs_dir) / config.name != resume:
            config.runs_dir = str(resume.parent)
            config.run_name = resume.name
        if "progress" in options:
            config.progress = options["progress"]
    else:
        values: dict[str, Any] = {}
        if args.config:
            values.update(load_config_file(args.config))
        elif "sequence" not in options:
            values.update(QUICKSTART)  # no sequence named: the quick start, with any overrides
        values.update(options)
        config = build_config(values) if values else TrainConfig()
    return config


def _print_run_summary(run_dir: Path, results: dict, seconds: float) -> None:
    from rich.console import Console

    from crlgym.experiments.aggregate import summarize_runs
    from crlgym.experiments.report import write_report
    from crlgym.experiments.results import load_run
    from crlgym.experiments.tables import render_table

    console = Console()
    report_dir = write_report([run_dir], run_dir)
    console.print(render_table(summarize_runs([load_run(run_dir)])))
    console.print(f"finished in {seconds / 60:.1f} min (evaluation {results['eval_time_s']:.0f} s)")
    console.print(f"run directory    {run_dir}")
    console.print(f"results          {run_dir / 'results.json'}, {run_dir / 'eval.csv'}")
    console.print(f"report           {report_dir}")
    if results["videos"]:
        console.print(f"videos           {Path(results['videos'][0]).parent.parent}/")
    console.print(f"checkpoint       {run_dir / 'checkpoints' / 'latest.pt'}")
    console.print(f"TensorBoard      tensorboard --logdir {run_dir / 'tb'}")


def _cmd_eval(args: argparse.Namespace) -> None:
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from crlgym.experiments.runner import Runner, has_checkpoint, load_run_config

    if args.episodes is not None and not 1 <= args.episodes <= MAX_EVAL_EPISODES:
        raise crlgym.CrlgymError(
            f"--episodes must be between 1 and {MAX_EVAL_EPISODES}, got {args.episodes}"
        )
    run_dir = Path(args.run_dir)
    config = load_run_config(run_dir)
    config.progress = False
    if args.episodes is not None:
        config.eval_episodes = args.episodes
    if not has_checkpoint(run_dir):
        raise crlgym.CrlgymError(f"{run_dir} has no checkpoint yet; nothing to evaluate")
    runner = Runner(config, run_dir, tensorboard=False)  # evaluating writes nothing to the run
    runner.restore()
    scores, seconds = runner.evaluator.evaluate(runner.policy, runner.task_context)
    table = Table(title=f"{run_dir} at step {runner.agent.num_timesteps}")
    for column in ("task", "success (stochastic)", "success (deterministic)", "return"):
        table.add_column(column)
    for task, score in zip(runner.sequence.task_names, scores, strict=True):
        table.add_row(
            task,
            f"{score.stochastic:.2f}",
            f"{score.deterministic:.2f}",
            f"{score.stochastic_return:.1f}",
        )
    Console().print(table)
    average = np.mean([s.stochastic for s in scores])
    Console().print(f"average success {average:.2f} ({seconds:.0f} s)")


def _cmd_collect(args: argparse.Namespace) -> None:
    from crlgym.experiments.collect import collect

    collect(
        args.tasks,
        episodes=args.episodes,
        data_dir=args.data_dir,
        seed=args.seed,
        action_noise=args.noise,
        noisy_share=args.noisy_share,
        noisy_noise=args.noisy_noise,
        dmc_expert_steps=args.dmc_expert_steps,
        overwrite=args.overwrite,
        kind=args.kind,
        episode_length=args.episode_length,
        progress=not args.no_progress,
    )


def _cmd_data_info(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from crlgym.memory.datasets import dataset_info, load_dataset

    info = dataset_info(load_dataset(args.name, args.data_dir))
    table = Table(title=info.dataset_id, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    success = "n/a (no success signal)" if info.success_rate is None else f"{info.success_rate:.3f}"
    rows = [
        ("task", info.task),
        ("kind", info.kind),
        ("path", str(info.path)),
        ("episodes", str(info.episodes)),
        ("steps", str(info.steps)),
        ("return mean", f"{info.return_mean:.3f}"),
        ("return std", f"{info.return_std:.3f}"),
        ("return min", f"{info.return_min:.3f}"),
        ("return max", f"{info.return_max:.3f}"),
        ("success rate", success),
        ("noisy episodes", str(info.noisy_episodes)),
        ("observation space", info.observation_space),
        ("action space", info.action_space),
        ("size on disk", f"{info.size_bytes / 1e6:.2f} MB"),
    ]
    rows += [(f"collection: {key}", str(value)) for key, value in info.collection.items()]
    for field, value in rows:
        table.add_row(field, escape(value))
    Console().print(table)


def _cmd_data_list(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    from crlgym.memory.datasets import dataset_info, list_datasets, load_dataset, resolve_data_dir

    console = Console()
    ids = list_datasets(args.data_dir)
    if not ids:
        console.print(
            f"no datasets in {resolve_data_dir(args.data_dir)}; record some with crl collect"
        )
        return
    table = Table(title=f"datasets in {resolve_data_dir(args.data_dir)}")
    for column in ("dataset", "episodes", "steps", "return mean", "success", "size"):
        table.add_column(column, justify="right", no_wrap=True)
    for name in ids:
        info = dataset_info(load_dataset(name, args.data_dir))
        success = "-" if info.success_rate is None else f"{info.success_rate:.2f}"
        table.add_row(
            name,
            str(info.episodes),
            str(info.steps),
            f"{info.return_mean:.1f}",
            success,
            f"{info.size_bytes / 1e6:.1f} MB",
        )
    console.print(table)


def _cmd_pretrain(args: argparse.Namespace) -> None:
    from rich.console import Console

    from crlgym.experiments.pretrain import pretrain

    tasks = [task for spec in args.data for task in envs.load_sequence(spec).task_names]
    console = Console()
    started, every = time.perf_counter(), max(1, args.updates // 10)

    def report_progress(step: int) -> None:
        if step % every == 0:
            console.print(f"  update {step}/{args.updates} ({time.perf_counter() - started:.0f} s)")

    summary = pretrain(
        tasks,
        args.out,
        model=args.model,
        updates=args.updates,
        data_dir=args.data_dir,
        eval_episodes=args.eval_episodes,
        seed=args.seed,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        checkpoint_every=args.checkpoint_every,
        threads=args.threads,
        on_update=report_progress,
    )
    console.print(
        f"pretrained {summary['model']} ({summary['parameters']} parameters) on "
        f"{len(summary['tasks'])} tasks: {summary['updates']} updates, "
        f"{summary['samples_per_second']:.0f} samples/s -> {summary['checkpoint']}"
    )
    for task, score in summary.get("evaluation", {}).get("tasks", {}).items():
        console.print(f"  {task}: score {score['score']:.2f}, return {score['return']:.1f}")


def _add_pretrain_parser(commands: argparse._SubParsersAction) -> None:
    from crlgym.memory.datasets import DEFAULT_DATA_DIR

    parser = commands.add_parser(
        "pretrain",
        help="pretrain a multi-domain Decision Transformer (L2M) on offline datasets",
        description="Train one Decision Transformer (reward tokens, context 5) on the union "
        "of the tasks' datasets (crl collect) in one padded space, evaluate it online on "
        "them, and save model.pt for crl train --agent l2m --pretrained.",
    )
    parser.add_argument(
        "--data", nargs="+", required=True, help="pretraining tasks: sequences (MT40) or a,b lists"
    )
    parser.add_argument("--model", choices=("small", "paper"), default="small", help="size")
    parser.add_argument("--updates", type=int, default=10_000, help="gradient updates")
    parser.add_argument("--out", required=True, help="output directory (model.pt, tb/, json)")
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="dataset directory")
    parser.add_argument(
        "--eval-episodes", type=int, default=5, help="evaluation episodes per task (0: none)"
    )
    parser.add_argument("--batch-size", type=int, help="episodes per batch (preset's default)")
    parser.add_argument("--learning-rate", type=float, help="AdamW peak (preset's default)")
    parser.add_argument(
        "--checkpoint-every", type=int, default=0, help="updates between saves (0: at the end)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.set_defaults(run=_cmd_pretrain)


def _add_collect_parsers(commands: argparse._SubParsersAction) -> None:
    from crlgym.memory.datasets import DEFAULT_DATA_DIR

    collect = commands.add_parser(
        "collect",
        help="record offline datasets (Minari) of noisy expert rollouts",
        description="Roll out each task's expert (scripted for Meta-World and toy tasks, a SAC "
        "expert trained first for DMControl) with Gaussian action noise and store the "
        "episodes as Minari datasets crlgym/<task>/<kind>-v0 under --data-dir.",
    )
    collect.add_argument(
        "--tasks", nargs="+", required=True, help="sequence (MT40, DMC10), task list a,b, or tasks"
    )
    collect.add_argument("--episodes", type=int, default=100, help="episodes per task")
    collect.add_argument("--noise", type=float, default=0.1, help="action noise std")
    collect.add_argument(
        "--noisy-share", type=float, default=0.2, help="share of episodes with --noisy-noise"
    )
    collect.add_argument(
        "--noisy-noise", type=float, default=0.5, help="action noise std of the noisy share"
    )
    collect.add_argument(
        "--dmc-expert-steps",
        type=int,
        default=100_000,
        help="SAC training steps of a DMControl task's expert (reused once saved)",
    )
    collect.add_argument("--episode-length", type=int, help="steps per episode (domain default)")
    collect.add_argument("--kind", default="expert", help="dataset kind in the id (expert)")
    collect.add_argument(
        "--data-dir", default=str(DEFAULT_DATA_DIR), help="where datasets are stored"
    )
    collect.add_argument("--seed", type=int, default=0, help="collection seed")
    collect.add_argument("--overwrite", action="store_true", help="replace existing datasets")
    collect.add_argument("--no-progress", action="store_true", help="no progress bars")
    collect.set_defaults(run=_cmd_collect)

    data = commands.add_parser("data", help="inspect offline datasets")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    info = data_commands.add_parser("info", help="statistics and settings of one dataset")
    info.add_argument("name", help="task name (its expert dataset) or dataset id")
    info.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="dataset directory")
    info.set_defaults(run=_cmd_data_info)
    listing = data_commands.add_parser("list", help="every dataset in the data directory")
    listing.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="dataset directory")
    listing.set_defaults(run=_cmd_data_list)


class _Parser(argparse.ArgumentParser):
    """argparse in the ``crl`` error style: a mistake is one line that names the fix (no
    usage block), exit status 2. Sub-commands' parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def _unrecognized(
    parser: argparse.ArgumentParser, args: argparse.Namespace, extra: list[str]
) -> NoReturn:
    """The error for arguments no option took, naming the closest option of the command."""
    command = parser
    while True:  # down to the (sub-)command that parsed them
        action = next(
            (a for a in command._actions if isinstance(a, argparse._SubParsersAction)), None
        )
        if action is None or getattr(args, action.dest, None) not in action.choices:
            break
        command = action.choices[getattr(args, action.dest)]
    message = f"unrecognized arguments: {' '.join(extra)}"
    flags = [flag for a in command._actions for flag in a.option_strings]
    unknown = next((word.partition("=")[0] for word in extra if word.startswith("--")), None)
    close = difflib.get_close_matches(unknown, flags, n=1) if unknown else []
    if close:
        message += f" (did you mean {close[0]}?)"
    command.error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="crl", description="crlgym: continual reinforcement learning on task sequences."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="show tasks and sequences")
    listing.add_argument(
        "what", nargs="?", default="all", choices=("all", "tasks", "sequences", "methods")
    )
    listing.set_defaults(run=_cmd_list)
    demo = commands.add_parser(
        "demo", help="run Meta-World's scripted experts on CW tasks and record videos"
    )
    demo.add_argument("--tasks", nargs="+", default=list(DEMO_TASKS), help="task names")
    demo.add_argument("--episodes", type=int, default=5, help="episodes per task")
    demo.add_argument("--seed", type=int, default=0, help="seed of the first episode")
    demo.add_argument("--size", type=int, default=256, help="video frame size in pixels")
    demo.add_argument("--video-dir", default="videos/demo", help="where mp4s are written")
    demo.set_defaults(run=_cmd_demo)

    train = commands.add_parser(
        "train",
        usage="%(prog)s [-h] [--config FILE] [--resume RUN_DIR] [--overwrite] [OPTION VALUE ...]",
        help="train through a task sequence (no arguments: the quick start)",
        description="Train an agent through a task sequence, evaluating every task as it "
        "goes. Without --sequence or --config it runs the quick start (3 Continual World "
        "tasks, a small budget, a few minutes), to which other options apply; with "
        "--sequence the defaults are Continual World's protocol (listed below). The "
        "options are grouped by what they configure; a --config YAML file takes the same "
        "names (snake_case), flat or nested under sac:, plasticity:, dt: and l2m:.",
    )
    train.add_argument(
        "--config", metavar="FILE", help="YAML file of options (command-line options win)"
    )
    train.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its checkpoint")
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing run (only a directory that is a crlgym run is deleted)",
    )
    add_config_options(train)
    train.set_defaults(run=_cmd_train)

    evaluate = commands.add_parser("eval", help="evaluate a run's latest checkpoint on its tasks")
    evaluate.add_argument("run_dir", help="a run directory (runs/<name>)")
    evaluate.add_argument("--episodes", type=int, help="stochastic episodes per task")
    evaluate.set_defaults(run=_cmd_eval)

    add_report_parser(commands)
    _add_collect_parsers(commands)
    _add_pretrain_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        _unrecognized(parser, args, extra)
    try:
        args.run(args)
    except CrlgymError as error:
        print(f"crl: error: {_one_line(str(error))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ncrl: {_interrupted(args)}", file=sys.stderr)
        return 130
    except OSError as error:  # a path the system refused: say which and why, in one line
        where = f" ({error.filename})" if error.filename else ""
        print(
            f"crl: error: {error.strerror or error}{where}; check the path and its permissions",
            file=sys.stderr,
        )
        return 2
    return 0


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _interrupted(args: argparse.Namespace) -> str:
    """What Ctrl-C says: for crl train, the command that continues the run."""
    from crlgym.experiments.runner import is_run_dir

    run_dir = getattr(args, "interrupted_run", None)
    if run_dir is not None and is_run_dir(run_dir):
        return f"interrupted; continue the run with: crl train --resume {run_dir}"
    return "interrupted"


if __name__ == "__main__":
    sys.exit(main())
