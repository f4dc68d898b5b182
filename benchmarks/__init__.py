"""Benchmarks of the hub against simulated banks on loopback: ``python -m benchmarks SCENARIO``.

Each scenario starts its own bank simulator and hub as child processes, drives them from this
process, measures, and writes a JSON report (plus a Markdown summary beside it).
"""
