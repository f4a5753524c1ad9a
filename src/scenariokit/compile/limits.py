"""Every bound the compiler puts on what a scenario may ask for, in one place.

A scenario may come from an untrusted pull request and run in CI next to secrets, so each bound keeps a
hostile file to a quick, positioned error (exit 2) in bounded time and memory. Each is far above what a
real scenario needs; docs/dsl-reference.md lists them.
"""

from __future__ import annotations

# --- the scenario file (parse.py) -------------------------------------------------------------------
MAX_FILE_BYTES = 1024 * 1024
# YAML values, counting every use of an alias: PyYAML composes about 25k values a second here, and an
# alias bomb (billion laughs) expands exponentially once built.
MAX_NODES = 20_000
# Deeper mappings and lists are refused: every later stage walks values recursively (pydantic gives up at
# about 260 levels, CPython's parser at 200 nested brackets in a generated locustfile).
MAX_DEPTH = 100
# An expression (curve, duration, SLO, distribution): the grammars cost ~0.25 ms per token.
MAX_EXPR_CHARS = 4096
# `{` and `$` in one request value: locating references is linear in the value's length per reference.
MAX_TEMPLATE_BRACES = 1000

# --- headers (lower.py; the runner checks `${env:NAME}` values the same way) -------------------------
HEADER_NAME_PATTERN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"  # an HTTP token (RFC 9110 5.1), whole name (fullmatch)
# Control characters other than a tab: CR or LF would end the header and inject others (request
# splitting), NUL is cut or refused by clients, so none is ever sent.
HEADER_VALUE_FORBIDDEN = r"[\x00-\x08\x0a-\x1f\x7f]"

# --- data sets (datasets.py) ------------------------------------------------------------------------
DATASET_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*$"  # as `{name}` in templates; also a file name
MAX_DATASET_NAME_CHARS = 64
MAX_DATA_FILE_BYTES = 20 * 1024 * 1024  # one image, CSV or sidecar file
MAX_DATASET_BYTES = 64 * 1024 * 1024  # all files of one data set (shipped base64 in the script's folder)
MAX_DATA_BYTES = 128 * 1024 * 1024  # all data sets of a scenario together (each image is held 2.7x as text)
MAX_CARDS = 256  # built-in cards drawn for a scenario, all data sets together: ~5 ms each

# --- load (lower.py) --------------------------------------------------------------------------------
MAX_USERS = 100_000  # an open model's user pool and `run --users`: what one machine's engine is given
# a closed model's level: a fleet's (docs/kubernetes.md, scenarios/million-users.yaml), split over workers
MAX_FLEET_USERS = 10_000_000
MAX_RATE = 100_000.0  # an open model's level, requests/s
MIN_RUN_S = 1.0  # a curve shorter than this measures nothing
MAX_RUN_S = 7 * 24 * 3600.0  # a week: the longest soak
MAX_STAGES = 10_000
MAX_TIME_S = 3600.0  # a timeout, an expected latency, a think time
MAX_WEIGHT = 1_000_000.0

# --- flows: an entry's `steps:` (model.py, lower.py) ------------------------------------------------
MAX_STEPS = 50  # requests one user sends in order for one pick of the mix; a flow is a task, not a script
# A step's name: the record's name is `<entry>.<step>`, which an SLO's `for` must be able to write (its
# NAME allows `-` and `.` between word characters); no `.`, so the record name splits one way only.
STEP_NAME_PATTERN = r"^[A-Za-z0-9_]+(-[A-Za-z0-9_]+)*$"
MAX_STEP_NAME_CHARS = 64

# --- the target's start command (model.py; run only under --allow-exec) ------------------------------
MAX_COMMAND_ARGS = 256  # far above a real server's command line
MAX_COMMAND_ARG_CHARS = 4096

# --- faults (model.py, lower.py) ------------------------------------------------------------------
MAX_FAULTS = 100  # entries in `faults:`
# planned occurrences, all faults together: an `every: 1s` over a week would otherwise plan 604,800
MAX_FAULT_OCCURRENCES = 1000
MAX_FAULT_DELAY_S = 60.0  # an added latency, its jitter, a packet-loss stall (the server's own bound too)
MAX_EMBEDDED_INSTANCES = 8  # embedded servers behind the round-robin proxy: each loads its models
