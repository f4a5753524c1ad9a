"""scenariokit: declarative load-test scenarios for AI recognition services."""

__version__ = "0.1.0"
