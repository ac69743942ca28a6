"""Grade a folder of submitted exercise notebooks into a CSV.

    python -m alignlab grade SUBMISSIONS_DIR --out grades.csv [--timeout 300] [--jobs N]
                             [--executed DIR] [--set NAME] [--sandbox auto|bwrap|none]

Every ``*.ipynb`` under ``SUBMISSIONS_DIR`` (sub-folders included, checkpoints skipped)
is one submission. For each:

1. **Which exercise set?** ``metadata.alignlab.exercise_set`` (written into every
   generated exercise notebook), else the file name (``02_gae``, ``gae`` or ``02`` as a
   word in it), else the ``check("...")`` calls in its cells. ``--set`` forces one.
2. **Run it** in its own process (`grading.student`: an IPython shell, as in a kernel),
   inside a bubblewrap sandbox when the machine has one (`grading.sandbox`: no network,
   own PID namespace, read-only file system but a private scratch /tmp, memory, process,
   CPU-time and file-size limits). Cells that raise do not stop the run.
3. **Judge it from outside** (`grading.judge`): the expected answers are computed by this
   process; the student's process only receives test inputs and returns its function's
   outputs. ``check(...)`` cells are answered the same way, and after the last cell every
   exercise is checked again on the functions *as the notebook left them*: a deleted check
   cell changes nothing, a deleted or renamed function scores 0. Nothing the submission
   does to ``alignlab``, ``sys.modules``, its globals or any file changes a score.
4. **Time limit** (``--timeout`` seconds, default 300, for the whole submission, process
   start included): the student's cells get the time minus a reserve for the grader's
   pass (20 %, between 10 and 60 s). A cell still running when that time is up is
   interrupted, and the remaining cells are skipped; the grader's pass still runs. A
   submission that ignores the interrupt is killed a few seconds later and keeps the
   points its check cells had earned.
5. **Score** each exercise: the grader's pass, else the last ``check`` cell, else 0. One
   point per hidden test case (``checks.max_points``).
6. **Authorship** (`grading.authorship`): a solution whose body uses ``alignlab`` (the
   reference losses, the checks) or that reads files outside its folder gets a
   ``review`` note ("needs review: ..."); its points are computed as usual.

``--jobs N`` grades N submissions at a time (default: the number of CPU cores); the CSV
stays in submission order and is rewritten after every graded row (so a crash or a Ctrl-C
keeps the rows already graded, and nothing a submission writes into it survives).

A broken or hostile submission costs its author points, never the run: a file that is not
valid JSON, a syntax error, an infinite loop, a deleted cell or a renamed function, or a
submission that kills its parent, forks without end, allocates all memory, fills the disk,
closes its output or never returns gives a row with the points earned, a ``status`` and an
``error``.

CSV columns: ``submission`` (path relative to the folder), ``exercise_set``, ``status``
(``ok`` | ``cell errors`` | ``timeout`` | ``killed`` | ``kernel died`` | ``invalid notebook``
| ``unknown exercise set`` | ``grader error``), ``points``, ``max_points``, ``seconds``, one
column of points per exercise of every set (blank when not in the submission's set),
``feedback`` (the hint of every exercise not passed), ``error`` (what went wrong with the
run) and ``review`` (why the code needs an instructor's look, if it does).

Sandbox
-------
With bubblewrap (``apt-get install bubblewrap``) each submission is isolated from the
grader, the network and the other submissions (`grading.sandbox` says how, and what holds
where: the process cap, run as root, needs a pids cgroup). Without it, the grader says so loudly
once and runs submissions UNSANDBOXED: as plain processes with your user, files and
network (resource limits and the outside judge still apply). Then grade untrusted
submissions inside a throw-away container without network, for example::

    docker run --rm --network none --cpus 2 --memory 4g \\
        -v "$PWD/submissions:/submissions:ro" -v "$PWD/out:/out" \\
        -v "$HOME/.cache/alignlab:/cache" -e ALIGNLAB_CACHE=/cache \\
        alignlab python -m alignlab grade /submissions --out /out/grades.csv

The model cache (``ALIGNLAB_CACHE``) is read-only inside the sandbox; a submission sees a
writable view of it (links to its finished models, in its scratch folder). Build it first
(run one notebook) so that submissions that need the SFT model do not each train it.

Layout: ``grade`` (the folder, one notebook, the CSV, the command line), ``judge`` (runs one
submission and scores it from outside), ``student`` (the submission's process), ``protocol``
(their messages), ``sandbox`` (bubblewrap, limits), ``authorship`` (the review notes).
"""

from .grade import (
    ALL_EXERCISES,
    COLUMNS,
    GRACE,
    GRADER_SOURCE,
    add_parser,
    cmd_grade,
    detect_set,
    find_submissions,
    grade_folder,
    grade_notebook,
)
from .sandbox import Limits

__all__ = ["ALL_EXERCISES", "COLUMNS", "GRACE", "GRADER_SOURCE", "Limits", "add_parser", "cmd_grade", "detect_set",
           "find_submissions", "grade_folder", "grade_notebook"]
