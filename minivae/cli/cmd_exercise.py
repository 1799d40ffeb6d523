"""``minivae exercise``: list the exercises, print one's stub (and its worked answer), or check a learner's file
against finite differences (:mod:`minivae.exercises`); exit status 1 when the check fails."""

from __future__ import annotations

from pathlib import Path


def cmd_exercise(args) -> int:
    """List the exercises, print one's stub, or check a learner's file (``minivae/exercises/``)."""
    from ..exercises import EXERCISES, check_file, get_exercise

    if args.action == "list":
        for name, exercise in EXERCISES.items():
            print(f"{name:<14} {exercise.function:<27} {exercise.summary}")
        print("\nminivae exercise show NAME > my_NAME.py  prints a stub to fill in; "
              "minivae exercise check NAME my_NAME.py  checks it")
        return 0
    if args.name is None:
        raise ValueError(f"NAME: expected an exercise name after {args.action!r}, one of {sorted(EXERCISES)}")
    exercise = get_exercise(args.name)
    if args.action == "show":
        print(exercise.stub.read_text(encoding="utf-8"), end="")
        if args.answer:
            print("\n" + exercise.answer(), end="")
        return 0
    if args.file is None:
        raise ValueError(f"FILE: expected the Python file defining {exercise.function}() to check, got none")
    limit = {} if args.timeout is None else {"timeout": args.timeout}
    report = check_file(args.name, args.file, **limit)  # the file runs in a child process, within the time limit
    if report.error:  # it could not be loaded or run: one line, exit 2
        raise ValueError(f"FILE: {report.error}" if not report.error.startswith("FILE:") else report.error)
    if report.printed:
        print(f"{Path(args.file).name} printed:\n" + report.printed + "\n", end="")
    print(report.text(), end="")
    if args.answer:
        print("\n" + exercise.answer(), end="")
    return report.status
