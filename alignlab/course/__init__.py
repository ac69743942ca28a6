"""The course machinery beside the library.

* ``runner``: the headless course runner, which collects the ``alignlab.report(...)`` line every
  notebook ends with (``alignlab/report.py``);
* ``widgets``: sliders that draw their default statically when executed headless;
* ``exercises``: ``solutions/`` -> ``exercises/`` generation;
* ``checks``: the hidden tests behind ``check("...")`` cells, one module per exercise set;
* ``grading``: the instructor's grader of a folder of submitted notebooks.
"""
