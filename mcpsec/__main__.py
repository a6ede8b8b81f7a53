"""`python -m mcpsec` runs the same entry point as the `mcpsec` command."""

from mcpsec.cli.main import main

if __name__ == "__main__":
    main()
