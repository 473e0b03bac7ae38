"""Shell completion of values: task names from the agent's TASKS.yaml (of --home, else $HOME)."""

from __future__ import annotations


def task_names(ctx, _param, incomplete: str):
    """click `shell_complete` callback: the task names of TASKS.yaml that start with `incomplete`."""
    from click.shell_completion import CompletionItem

    try:
        from keystone_agents.space import AgentSpace
        from keystone_agents.taskfile import TaskFile

        home = None
        node = ctx
        while node is not None and home is None:  # --home may be given to this command or a parent
            home = node.params.get("home")
            node = node.parent
        tf = TaskFile.load(AgentSpace.from_home(home).tasks_file)
        names = [e.name for e in tf.entries if e.name]
    except Exception:  # noqa: BLE001 - completion must never print a traceback
        names = []
    return [CompletionItem(name) for name in names if name.startswith(incomplete)]
