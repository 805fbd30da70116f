"""The one training loop and what it needs: losses, optimisers, the schedule, the Trainer."""
