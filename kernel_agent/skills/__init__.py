"""Skills: functions an agent wrote and the host kept, importable read-only by later sessions."""
