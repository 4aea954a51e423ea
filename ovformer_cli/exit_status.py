"""Exit statuses of every command (the README lists them for batch scripts), and the text ``--help`` shows.

- 0: done;
- 1: ``segment``: some inputs failed (listed; the others were processed); any command: out of memory;
- 2: a usage error (bad option, vocabulary, weights, file): nothing was done;
- 3: ``train``: stopped by SIGTERM after saving a checkpoint (``--resume`` continues);
- 4: ``segment``: every input produced a result, but some were incomplete (a damaged video);
- 128 + N: interrupted by signal N (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP); unfinished outputs removed.

This module imports nothing: ``ovformer --help`` reads it without loading rich or any command.
"""

from __future__ import annotations

#: The exit statuses above, as ``--help`` lists them (click's "\b" keeps the lines as they are).
EXIT_STATUS_HELP = (
    "\b\nExit status: 0 done; 1 segment: some inputs failed (the others were processed), or out of memory;\n"
    "2 usage error, nothing done; 3 train: stopped by SIGTERM after a checkpoint;\n4 segment: some results "
    "incomplete (damaged video); 128+N: stopped by signal N (130 Ctrl-C, 143 SIGTERM)."
)

#: Exit status for a user mistake (bad input, missing file); 1 is left to failures (batch items, memory).
EXIT_USER_ERROR = 2
#: Exit status of a command that failed for want of memory (nothing wrong with its inputs).
EXIT_FAILED = 1
#: Exit status base for a run stopped by a signal: 128 + the signal number, as shells report it.
EXIT_SIGNAL_BASE = 128
