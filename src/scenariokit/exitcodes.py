"""Exit codes, the same for every engine and command (one table: ../shared/notes/decisions.md)."""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # every judged SLO holds (compare: no significant regression), or the command did its job
    SLO_BREACHED = 1  # an SLO failed, a regression was found, or the run aborted on its own rule
    INVALID_SCENARIO = 2  # the scenario, the command line or the run folder is wrong: nothing was sent
    RUN_ERROR = 3  # a crash, a signal, an engine or target failure: the run could not be judged honestly
    INCONCLUSIVE = 4  # nothing measured, or too few samples to judge an SLO (--allow-inconclusive: 0)
