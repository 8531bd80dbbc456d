"""The one error a pipeline run raises for its caller."""


class PipelineError(RuntimeError):
    """The pipeline cannot run (a stage failed to start, a port is taken): the message says which and why."""


# A stage process exits with this after it sent a StageFatal notice: the supervisor stops the run, never restarts it.
FATAL_EXIT = 2
