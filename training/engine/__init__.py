"""What every training stage shares: distributed setup, schedule, checkpoints, the loop."""
