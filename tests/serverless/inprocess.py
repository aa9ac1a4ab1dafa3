"""An invoker that runs the worker handler in this process (no Lambda runtime), for backend tests."""
import contextlib

from robustagg.backends.serverless import handler as H
from robustagg.backends.serverless.invoker import InvokeResult


class InProcessInvoker:
    """Runs the handler's work in this process. Workers use the backend's own store, or with
    ``environ`` (a function's configuration) the store the handler opens from it, as a deployed
    function would. ``tamper[w]`` runs just before worker w's work (a Byzantine client of the
    store acting first) with the store and the event; when it returns "skip", worker w's own
    work is not done."""

    def __init__(self, backend, tamper=None, environ=None):
        self.backend, self.tamper, self.environ = backend, tamper or {}, environ

    def open_store(self, ev):
        if self.environ is None:
            return contextlib.nullcontext(self.backend.store)
        return H.open_store(ev, environ=self.environ)

    def invoke(self, event, invocation_type=None):
        w = event["worker_id"]
        if w in self.tamper and self.tamper[w](self.backend.store, event) == "skip":
            return InvokeResult(True, 200, {"ok": True, "loss": 0.0, "compute_s": 0.0})
        try:
            return InvokeResult(True, 200, H.handle(event, self.open_store))
        except H.WorkerCrash as e:
            return InvokeResult(False, 200, {"errorType": "WorkerCrash", "errorMessage": str(e)},
                                function_error="WorkerCrash")
