"""``python -m semcodec`` runs the command-line interface."""

from semcodec.cli import main

if __name__ == "__main__":
    main()
