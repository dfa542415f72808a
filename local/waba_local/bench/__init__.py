"""`make bench`: the budget's scenarios, the crowds, the FC drain and the cold starts (python -m waba_local.bench)."""
