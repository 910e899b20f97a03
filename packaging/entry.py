"""Entry point of the bundled ``TalkingHeadStudio`` executable (built by ``packaging/TalkingHeadStudio.spec``).

It accepts the same commands as the ``talkstudio`` console script (``render``, ``gui``, ``models``, ...). Started
with no command -- a double click in a file manager, the ``.desktop`` entry, the macOS Dock -- it opens the studio.
"""

from __future__ import annotations

import sys


def frozen_argv(argv: list[str]) -> list[str]:
    """The command line the studio should run: ``argv`` without launcher noise, or ``["gui"]`` when empty.

    macOS Finder used to pass a ``-psn_<pid>`` process serial number to app bundles; it is dropped here.
    """
    args = [a for a in argv if not a.startswith("-psn_")]
    return args or ["gui"]


def run() -> int:
    """Run the studio's command line with :func:`frozen_argv`; returns the exit status."""
    from studio.cli import main

    return main(frozen_argv(sys.argv[1:]))


if __name__ == "__main__":
    import multiprocessing

    multiprocessing.freeze_support()  # the studio's decoder process (spawn) re-enters this executable
    sys.exit(run())
