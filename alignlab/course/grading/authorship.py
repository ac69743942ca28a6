"""Authorship flags: what in a submission's code deserves an instructor's look ("needs review").

The checks test behaviour: a solution that calls the library's reference implementation
passes them. This reads the submission's code (in the grader's process, never running it)
and notes, per exercise, when the function's body (or a notebook function it calls)

* refers to ``alignlab`` (``alignlab.losses.*``, the checks module, the methods that wrap
  the losses), however it was imported;
* imports or evaluates code dynamically (``__import__``, ``importlib``, ``sys.modules``,
  ``exec``, ``eval``);

and, anywhere in the notebook, reads a file by an absolute path or one that climbs out
of its folder (``..``). The sandboxed process adds the files the notebook's own code
actually opened outside its folder (`alignlab.course.grading.student`). The points are
computed as usual; the flag only asks for a review.
"""

from __future__ import annotations

import ast

SUSPECT_NAMES = {"__import__", "importlib", "exec", "eval", "compile", "globals", "sys.modules"}
READERS = {"open", "read_text", "read_bytes", "load", "loadtxt", "read_csv", "listdir", "scandir", "glob", "walk",
           "Path", "iterdir"}


def _python(source: str) -> str:
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)
    except Exception:  # IPython missing or a cell it cannot transform: take it as plain Python
        return source


def _dotted(node) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def _aliases(trees) -> dict[str, str]:
    """Name -> the module path it was imported as (``L`` -> ``alignlab.losses``)."""
    out = {}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for a in node.names:
                    out[a.asname or a.name] = f"{node.module}.{a.name}"
    return out


def _resolve(dotted: str, aliases: dict) -> str:
    root, _, rest = dotted.partition(".")
    base = aliases.get(root, root)
    return f"{base}.{rest}" if rest else base


def _reads(tree) -> list[str]:
    notes = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func) or ""
        if name.split(".")[-1] not in READERS:
            continue
        for arg in node.args[:1]:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                path = arg.value
                if path.startswith(("/", "~")) or ".." in path.replace("\\", "/").split("/"):
                    notes.append(f"reads {path}")
    return notes


def _locals(fn) -> set[str]:
    """Names local to the function ``fn`` (its parameters and what it assigns), as Python scopes them."""
    args = fn.args
    names = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg] if a}
    declared = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            declared.update(node.names)
    return names - declared


def review_flags(sources: list[str], exercises) -> list[str]:
    """The reasons (possibly none) to review a submission made of code cells ``sources``."""
    trees = []
    for src in sources:
        try:
            trees.append(ast.parse(_python(src)))
        except (SyntaxError, ValueError):
            continue
    aliases = _aliases(trees)
    functions = {}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions[node.name] = node  # the last definition wins, as when the notebook runs
    notes: list[str] = []
    for exercise in exercises:
        seen, todo = set(), [exercise]
        while todo:
            name = todo.pop()
            if name in seen or name not in functions:
                continue
            seen.add(name)
            local = _locals(functions[name])
            for node in ast.walk(functions[name]):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    mod = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                    if mod and mod.split(".")[0] == "alignlab":
                        notes.append(f"`{exercise}` imports {mod}")
                if isinstance(node, (ast.Name, ast.Attribute)) and not isinstance(getattr(node, "ctx", None),
                                                                                   ast.Store):
                    dotted = _dotted(node)
                    if dotted is None:
                        continue
                    if dotted.split(".")[0] in local:  # a local variable, not the module of that name
                        continue
                    full = _resolve(dotted, aliases)
                    if full.split(".")[0] == "alignlab" and full.count(".") >= 1:
                        notes.append(f"`{exercise}` uses {full}")
                    elif dotted in SUSPECT_NAMES or full in SUSPECT_NAMES:
                        notes.append(f"`{exercise}` uses {dotted}")
                    elif isinstance(node, ast.Name) and node.id in functions and node.id != name:
                        todo.append(node.id)
    for tree in trees:
        notes += _reads(tree)
    unique = []
    for n in notes:  # keep the first of each, and a note per attribute chain only once
        if n not in unique and not any(u.startswith(n + ".") or n.startswith(u + ".") for u in unique):
            unique.append(n)
    return unique[:10]
