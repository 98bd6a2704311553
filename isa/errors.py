"""The one exception a user mistake raises: the CLI prints it as one `error:` line, exit 2."""


class SpikeforgeError(Exception):
    """A problem with the user's input (file, model, config), with where it is."""

    def __init__(self, message: str, where: str | None = None):
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)
