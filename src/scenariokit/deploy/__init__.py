"""Deployment front ends: what a scenario compiled for the engines becomes on a platform that runs them
(`scenariokit compile FILE --deploy kubernetes`). Imports compile/, the engines and the capacity plan;
only cli.py imports it."""
