"""Learning from the event log: the continuous trainer (trainer.py), batch mode (batch.py) and the trainer's
position in the log (checkpoint.py); docs/learning.md."""
