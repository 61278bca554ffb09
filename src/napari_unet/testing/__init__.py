"""What tests, benchmarks and the documentation use to act as a user would (simulated
scribbles); the package itself never imports it."""
