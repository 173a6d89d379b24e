"""The ``crl`` command line.

User mistakes (unknown task, bad value) print one message and exit with status 2; nothing
already written is touched.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import envs
from envs.errors import CrlgymError

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
    if what in ("all", "tasks"):
        table = Table(title="tasks")
        table.add_column("domain")
        table.add_column("count", justify="right")
        table.add_column("names")
        groups = {"metaworld": [], "dmc": [], "toy": []}
        for task in envs.all_tasks():
            groups[envs.task_domain(task)].append(task)
        for domain, names in groups.items():
            table.add_row(domain, str(len(names)), ", ".join(names))
        console.print(table)


def _cmd_demo(args: argparse.Namespace) -> None:
    """Scripted experts on the first CW10 tasks, with videos and success rates."""
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from experiments.video import write_video

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
        successes, returns, frames = [], [], []
        for episode in range(args.episodes):
            observation, _ = env.reset(seed=args.seed + episode)
            total, done, info = 0.0, False, {}
            record = episode == 0
            while not done:
                if record:
                    frames.append(env.render())
                observation, reward, terminated, truncated, info = env.step(policy(observation))
                total += reward
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crl", description="crlgym: continual reinforcement learning on task sequences."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="show tasks and sequences")
    listing.add_argument("what", nargs="?", default="all", choices=("all", "tasks", "sequences"))
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except CrlgymError as error:
        print(f"crl: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
