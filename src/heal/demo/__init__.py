"""Demo helpers: a contract-faithful fake ITSM server used by the demo, tests and benchmarks."""
