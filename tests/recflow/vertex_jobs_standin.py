"""A small local stand-in of the Vertex AI v1 REST API's custom jobs, for tests that run the real
google-cloud-aiplatform SDK against it (`aiplatform.init(api_transport="rest",
api_endpoint="http://127.0.0.1:PORT")`), beside the Model Registry's in vertex_standin.py.

customJobs.create stores the job (a project number in its name, state PENDING);
customJobs.get moves it through the states the test scripted (`states`: one per get, the last
repeated) unless it was cancelled; customJobs.cancel answers `{}` (google.protobuf.Empty) and
makes the job CANCELLING, then CANCELLED on the next get, as the service does. Bodies come from
recorded_vertex/custom_job.json. Every request is recorded for assertions.

Not a conftest: test modules import it by name.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from local_http import NO_SUCH_ROUTE, SentRequest, dispatch, json_handler, rfc3339_now, serve_http
from local_http import Reply as HttpReply
from vertex_standin import PROJECT_NUMBER, recorded

FINAL_STATES = frozenset({"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"})


@dataclass
class StoredJob:
    job_id: str
    location: str
    request: dict[str, Any]  # the CustomJob body of the create request
    created_at: str
    state: str = "JOB_STATE_PENDING"
    gets: int = 0


@dataclass
class VertexCustomJobs:
    """What the stand-in holds and was sent. `states`: the state each get reports in turn (the
    last one repeats); `on_cancel` runs when a cancel arrives, before it is answered."""

    states: list[str] = field(default_factory=lambda: ["JOB_STATE_RUNNING"])
    on_cancel: Callable[[], None] | None = None
    jobs: dict[str, StoredJob] = field(default_factory=dict)
    requests: list[SentRequest] = field(default_factory=list)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    first_get: threading.Event = field(default_factory=threading.Event)

    def sent(self, method: str, path_pattern: str) -> list[SentRequest]:
        with self._lock:
            return [request for request in self.requests if request.matches(method, path_pattern)]


class _Routes:
    def __init__(self, state: VertexCustomJobs) -> None:
        self.state = state
        location = "/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
        job = f"{location}/customJobs/(?P<job_id>[^/:]+)"
        self.routes: list[tuple[str, str, Callable[..., tuple[int, Any]]]] = [
            ("POST", f"{location}/customJobs", self.create),
            ("POST", f"{job}:cancel", self.cancel),
            ("GET", job, self.get),
        ]

    def handle(self, request: SentRequest) -> tuple[int, Any]:
        replied = dispatch(self.routes, request)
        return replied if replied is not None else (HTTPStatus.NOT_FOUND, NO_SUCH_ROUTE)

    def create(self, request: SentRequest, project: str, location: str) -> tuple[int, Any]:
        job_id = str(4_000_000_000_000_000_000 + len(self.state.jobs))
        stored = StoredJob(job_id, location, request.json(), rfc3339_now())
        self.state.jobs[job_id] = stored
        return HTTPStatus.OK, self._body(stored)

    def get(self, request: SentRequest, project: str, location: str, job_id: str) -> Any:
        stored = self.state.jobs.get(job_id)
        if stored is None:
            return HTTPStatus.NOT_FOUND, {"error": {"code": 404, "status": "NOT_FOUND"}}
        if stored.state == "JOB_STATE_CANCELLING":
            stored.state = "JOB_STATE_CANCELLED"
        elif stored.state not in FINAL_STATES:
            states = self.state.states
            stored.state = states[min(stored.gets, len(states) - 1)]
        stored.gets += 1
        self.state.first_get.set()
        return HTTPStatus.OK, self._body(stored)

    def cancel(self, request: SentRequest, project: str, location: str, job_id: str) -> Any:
        stored = self.state.jobs.get(job_id)
        if stored is None:
            return HTTPStatus.NOT_FOUND, {"error": {"code": 404, "status": "NOT_FOUND"}}
        if stored.state in FINAL_STATES:
            return HTTPStatus.BAD_REQUEST, {
                "error": {
                    "code": 400,
                    "message": f"Cannot cancel job in state {stored.state}.",
                    "status": "FAILED_PRECONDITION",
                }
            }
        stored.state = "JOB_STATE_CANCELLING"
        return HTTPStatus.OK, {}

    def _body(self, stored: StoredJob) -> dict[str, Any]:
        started = stored.state != "JOB_STATE_PENDING"
        ended = stored.state in FINAL_STATES
        values = {
            "project_number": PROJECT_NUMBER,
            "location": stored.location,
            "job_id": stored.job_id,
        }
        failed = stored.state == "JOB_STATE_FAILED"
        body = recorded(
            "custom_job",
            **values,
            display_name=stored.request.get("displayName", ""),
            job_spec=stored.request.get("jobSpec", {}),
            state=stored.state,
            create_time=stored.created_at,
            start_time=stored.created_at if started else None,
            end_time=rfc3339_now() if ended else None,
            update_time=rfc3339_now(),
            error=recorded("error_custom_job_failed", **values) if failed else None,
            labels=stored.request.get("labels", {}),
        )
        return {key: value for key, value in body.items() if value is not None}


def _respond(routes: _Routes) -> Callable[[SentRequest], HttpReply]:
    def respond(request: SentRequest) -> HttpReply:
        with routes.state._lock:
            routes.state.requests.append(request)
        if request.path.endswith(":cancel") and routes.state.on_cancel:
            routes.state.on_cancel()  # outside the lock: it may take its time
        with routes.state._lock:
            status, body = routes.handle(request)
        return status, body, {}

    return respond


@contextmanager
def vertex_custom_jobs(state: VertexCustomJobs | None = None) -> Iterator[VertexCustomJobs]:
    """The stand-in on 127.0.0.1 (a free port), serving `state`."""
    state = state or VertexCustomJobs()
    handler = json_handler(_respond(_Routes(state)), unquote_path=True)
    with serve_http(handler, name="vertex-jobs-standin") as url:
        state.url = url
        yield state
