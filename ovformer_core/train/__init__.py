"""Training losses: Hungarian matching and the set criterion."""
