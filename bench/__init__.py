"""Benchmarks of Nerve's parts (engine, edge, brain); each writes `bench/<name>-report.{json,md}`."""
