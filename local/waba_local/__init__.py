"""Local stand-ins for development, tests, the demo and benchmarks (never deployed).

The CAMS emulator lives in `waba_local.stand_ins.emulator`; this file imports nothing, so `python -m waba_local.stand_ins.emulator`
loads that module once and the other tools here do not pay for it.
"""
