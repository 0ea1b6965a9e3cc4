"""Lightning tasks for the vision models."""
