"""One base class for the errors a user can fix (bad input, missing data); CLIs print them as one line."""


class HeraError(Exception):
    """An error whose message says what is wrong and what to do."""


class ComputationAbandoned(KeyboardInterrupt):
    """A Ctrl-C taken while a compile or a compiled program still runs in another thread (it cannot be stopped):
    the command ends at once, without the runtime's teardown, which would wait for that work or crash under it."""
