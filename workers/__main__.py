"""`python -m workers ...`: the `modelfleet` program."""

from workers.program import main

main()
