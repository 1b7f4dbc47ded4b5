"""`python -m kdnmt` is the same as the `kdnmt` command."""

from kdnmt.cli.app import main

if __name__ == "__main__":
    main()
