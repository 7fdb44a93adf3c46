"""Verifying recordings: audit (the chain, the seal, the keys, a summary) and replay (re-running, comparing).

Library code: functions return reports; nothing here prints or exits (the command line does).
"""
