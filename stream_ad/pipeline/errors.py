"""The one error a pipeline run raises for its caller."""


class PipelineError(RuntimeError):
    """The pipeline cannot run (a stage failed to start, a port is taken): the message says which and why."""
