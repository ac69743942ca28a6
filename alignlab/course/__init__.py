"""The course machinery beside the library.

* ``runner``: ``report(...)`` (the call every notebook ends with) and the headless course runner;
* ``widgets``: sliders that draw their default statically when executed headless;
* ``exercises``: ``solutions/`` -> ``exercises/`` generation;
* ``checks``: the hidden tests behind ``check("...")`` cells, one module per exercise set;
* ``grading``: the instructor's grader of a folder of submitted notebooks.
"""
