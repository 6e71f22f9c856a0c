"""``python -m domainlens`` (also what ``torchrun -m domainlens`` runs)."""

from domainlens.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
