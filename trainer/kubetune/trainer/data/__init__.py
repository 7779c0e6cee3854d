"""Dataset handling shared by the trainer and the CLI: pure functions over lines and records.

``formats`` parses and validates JSONL (every problem, with its line), ``cleaning`` normalises
and de-duplicates, ``split`` makes the deterministic train/validation split, ``stats`` and
``report`` summarise the result for ``data-report.json``. Nothing here does I/O.
"""
