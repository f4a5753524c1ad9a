"""Exit codes, the same for every engine and command (one table, as k6 keeps its own)."""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # every SLO holds (or: the command did what it was asked)
    SLO_BREACHED = 1  # the run finished and at least one SLO failed
    INVALID_SCENARIO = 2  # the scenario (or the command line) is wrong: nothing was run
    RUN_ERROR = 3  # the run could not be done or finished honestly: target down, engine crashed
