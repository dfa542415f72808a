"""The platform adapters: what Lambda (aws) and Function Compute (fc) give a function, as the library uses it."""
