"""A small local stand-in of the Vertex AI v1 REST API's Model Registry, model evaluations and
the metadata store behind Vertex AI Experiments, for tests that run the real
google-cloud-aiplatform SDK against it (`aiplatform.init(api_transport="rest",
api_endpoint="http://127.0.0.1:PORT")`).

It keeps models and their versions in memory with the service's rules that matter to the
registry: models.upload creates a model (with `modelId`) or a version of `parentModel`, answered
by a long-running operation that operations.get reports done; a version alias is unique within a
model, so applying it to one version removes it from any other (upload's `versionAliases` and
mergeVersionAliases alike); `default` follows `is_default_version`; models.get accepts
`model@alias` and `model@version`; models.list and models.listVersions list. Bodies come from
the recorded-style JSON in recorded_vertex/. Every request is recorded for assertions.

Evaluations: models.evaluations.import attaches a ModelEvaluation to a version
(`models/ID@VERSION`), models.evaluations.list lists them. Experiments (the SDK's Experiment and
ExperimentRun are metadata contexts): metadataStores get/create, contexts create (a contextId
is unique: 409), get, patch (the SDK sends the whole merged resource), list, and
addContextChildren (an experiment's runs are its child contexts).

Not a conftest: test modules import it by name.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

from local_http import (
    NO_SUCH_ROUTE,
    SentRequest,
    dispatch,
    fill_recording,
    json_handler,
    rfc3339_now,
    serve_http,
)
from local_http import Reply as HttpReply

RECORDINGS = Path(__file__).resolve().parent / "recorded_vertex"
PROJECT_NUMBER = "123456789012"

Reply = tuple[int, Any]


@dataclass
class StoredVersion:
    version_id: str
    resource: dict[str, Any]  # the Model body of the upload request
    created_at: str
    aliases: list[str] = field(default_factory=list)


@dataclass
class StoredContext:
    context_id: str
    resource: dict[str, Any]  # the Context body as created, then as last patched
    created_at: str
    updated_at: str
    children: list[str] = field(default_factory=list)


@dataclass
class VertexModelRegistry:
    """What the stand-in holds (model id -> versions) and what it was sent."""

    models: dict[str, list[StoredVersion]] = field(default_factory=dict)
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[SentRequest] = field(default_factory=list)
    # (model id, version id) -> imported ModelEvaluation bodies
    evaluations: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    metadata_stores: dict[str, str] = field(default_factory=dict)  # store id -> created at
    contexts: dict[str, StoredContext] = field(default_factory=dict)  # context id -> context
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def sent(self, method: str, path_pattern: str) -> list[SentRequest]:
        with self._lock:
            return [request for request in self.requests if request.matches(method, path_pattern)]

    def experiment_runs(self, experiment: str) -> dict[str, dict[str, Any]]:
        """run display name -> its metadata (params, metrics, state), for the experiment's
        child contexts of schema system.ExperimentRun."""
        parent = self.contexts[experiment]
        runs = (self.contexts[child.rsplit("/", 1)[-1]] for child in parent.children)
        return {
            run.resource.get("displayName", run.context_id): run.resource.get("metadata", {})
            for run in runs
            if run.resource.get("schemaTitle") == "system.ExperimentRun"
        }

    def aliases(self, model_id: str) -> dict[str, list[str]]:
        """version id -> its aliases."""
        return {version.version_id: list(version.aliases) for version in self.models[model_id]}


def recorded(name: str, **values: Any) -> Any:
    """A recorded body with `$name` placeholders filled (see local_http.fill_recording)."""
    return fill_recording(RECORDINGS / f"{name}.json", values)


class _Routes:
    def __init__(self, state: VertexModelRegistry) -> None:
        self.state = state
        location = "/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
        model = f"{location}/models/(?P<model>[^/@:]+)(?:@(?P<version>[^/:]+))?"
        store = f"{location}/metadataStores/(?P<store>[^/:]+)"
        context = f"{store}/contexts/(?P<context>[^/:]+)"
        self.routes: list[tuple[str, str, Callable[..., Reply]]] = [
            ("POST", f"{location}/models:upload", self.upload),
            ("GET", f"{location}/models", self.list_models),
            # SDK 2.7's REST operations client lists the `/ui/` http rules before the `/v1/`
            # ones (aiplatform_v1/.../model_service/transports/rest.py) and polls the first.
            (
                "GET",
                f"{model}/operations/(?P<operation>[^/]+)".replace("/v1/", "/(?:ui|v1)/", 1),
                self.get_operation,
            ),
            ("GET", f"{model}:listVersions", self.list_versions),
            ("POST", f"{model}/evaluations:import", self.import_evaluation),
            ("GET", f"{model}/evaluations", self.list_evaluations),
            ("GET", f"{store}", self.get_store),
            ("POST", f"{location}/metadataStores", self.create_store),
            ("POST", f"{store}/contexts", self.create_context),
            ("GET", f"{store}/contexts", self.list_contexts),
            ("GET", context, self.get_context),
            ("PATCH", context, self.patch_context),
            ("POST", f"{context}:addContextChildren", self.add_children),
            ("POST", f"{model}:mergeVersionAliases", self.merge_aliases),
            ("GET", model, self.get_model),
        ]

    def handle(self, request: SentRequest) -> Reply:
        replied = dispatch(self.routes, request)
        return replied if replied is not None else (HTTPStatus.NOT_FOUND, NO_SUCH_ROUTE)

    def upload(self, request: SentRequest, project: str, location: str) -> Reply:
        body = request.json()
        resource = body["model"]
        parent = body.get("parentModel")
        if parent:
            model_id = parent.rsplit("/", 1)[-1]
            if model_id not in self.state.models:
                return HTTPStatus.NOT_FOUND, recorded("error_not_found_model")
        else:
            model_id = body.get("modelId") or str(len(self.state.models) + 1000)
            if model_id in self.state.models:
                return HTTPStatus.CONFLICT, {
                    "error": {
                        "code": 409,
                        "message": f"Model {model_id} already exists.",
                        "status": "ALREADY_EXISTS",
                    }
                }
            self.state.models[model_id] = []
        versions = self.state.models[model_id]
        version = StoredVersion(str(len(versions) + 1), resource, rfc3339_now())
        versions.append(version)
        aliases = list(resource.get("versionAliases", []))
        if not versions[:-1] and "default" not in aliases:
            aliases.append("default")  # a model's first version is its default
        self._apply_aliases(model_id, version, aliases)
        operation_id = str(8_000_000_000 + len(self.state.operations))
        values = {
            "project_number": PROJECT_NUMBER,
            "location": location,
            "model_id": model_id,
            "operation_id": operation_id,
            "time": version.created_at,
            "version_id": version.version_id,
        }
        self.state.operations[operation_id] = values
        return HTTPStatus.OK, recorded("models_upload_operation", **values)

    def get_operation(
        self,
        request: SentRequest,
        project: str,
        location: str,
        model: str,
        version: Any,
        operation: str,
    ) -> Reply:
        return HTTPStatus.OK, recorded(
            "operations_get_upload_done", **self.state.operations[operation]
        )

    def get_model(
        self, request: SentRequest, project: str, location: str, model: str, version: str | None
    ) -> Reply:
        found = self._version(model, version or "default")
        if found is None:
            return self._not_found(location, model, version)
        return HTTPStatus.OK, self._body(location, model, found)

    def list_versions(
        self, request: SentRequest, project: str, location: str, model: str, version: Any
    ) -> Reply:
        if model not in self.state.models:
            return self._not_found(location, model, None)
        return HTTPStatus.OK, {
            "models": [self._body(location, model, v) for v in self.state.models[model]]
        }

    def list_models(self, request: SentRequest, project: str, location: str) -> Reply:
        defaults = [
            self._body(location, model_id, found)
            for model_id in self.state.models
            if (found := self._version(model_id, "default")) is not None
        ]
        return HTTPStatus.OK, {"models": defaults} if defaults else {}

    def merge_aliases(
        self, request: SentRequest, project: str, location: str, model: str, version: str | None
    ) -> Reply:
        found = self._version(model, version or "default")
        if found is None:
            return self._not_found(location, model, version)
        requested = request.json()["versionAliases"]
        removed = {alias[1:] for alias in requested if alias.startswith("-")}
        found.aliases = [alias for alias in found.aliases if alias not in removed]
        self._apply_aliases(model, found, [a for a in requested if not a.startswith("-")])
        return HTTPStatus.OK, self._body(location, model, found)

    # --- model evaluations ------------------------------------------------------------------

    def import_evaluation(
        self, request: SentRequest, project: str, location: str, model: str, version: str | None
    ) -> Reply:
        found = self._version(model, version or "default")
        if found is None:
            return self._not_found(location, model, version)
        body = request.json()["modelEvaluation"]
        stored = self.state.evaluations.setdefault((model, found.version_id), [])
        evaluation = recorded(
            "model_evaluation",
            project_number=PROJECT_NUMBER,
            location=location,
            model_id=model,
            version_id=found.version_id,
            evaluation_id=str(5_000 + len(stored)),
            display_name=body.get("displayName", ""),
            metrics_schema_uri=body.get("metricsSchemaUri", ""),
            metrics=body.get("metrics", {}),
            metadata=body.get("metadata", {}),
            time=rfc3339_now(),
        )
        stored.append(evaluation)
        return HTTPStatus.OK, evaluation

    def list_evaluations(
        self, request: SentRequest, project: str, location: str, model: str, version: str | None
    ) -> Reply:
        found = self._version(model, version or "default")
        if found is None:
            return self._not_found(location, model, version)
        evaluations = self.state.evaluations.get((model, found.version_id), [])
        return HTTPStatus.OK, {"modelEvaluations": evaluations} if evaluations else {}

    # --- metadata store: Vertex AI Experiments ----------------------------------------------

    def get_store(self, request: SentRequest, project: str, location: str, store: str) -> Reply:
        if store not in self.state.metadata_stores:
            return HTTPStatus.NOT_FOUND, {
                "error": {
                    "code": 404,
                    "message": f"MetadataStore {store} is not found.",
                    "status": "NOT_FOUND",
                }
            }
        return HTTPStatus.OK, recorded(
            "metadata_store",
            project_number=PROJECT_NUMBER,
            location=location,
            store=store,
            time=self.state.metadata_stores[store],
        )

    def create_store(self, request: SentRequest, project: str, location: str) -> Reply:
        (store,) = request.query["metadataStoreId"]
        self.state.metadata_stores.setdefault(store, rfc3339_now())
        return HTTPStatus.OK, recorded(
            "metadata_store_create_operation",
            project_number=PROJECT_NUMBER,
            location=location,
            store=store,
            operation_id=str(7_000_000_000 + len(self.state.metadata_stores)),
            time=self.state.metadata_stores[store],
        )

    def create_context(
        self, request: SentRequest, project: str, location: str, store: str
    ) -> Reply:
        (context_id,) = request.query.get("contextId") or [str(len(self.state.contexts) + 1)]
        names = {"project_number": PROJECT_NUMBER, "location": location, "store": store}
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,127}", context_id):
            return HTTPStatus.BAD_REQUEST, {
                "error": {
                    "code": 400,
                    "message": f"Invalid context id {context_id}: must match "
                    "[a-z0-9][a-z0-9-]{0,127}.",
                    "status": "INVALID_ARGUMENT",
                }
            }
        if context_id in self.state.contexts:
            return HTTPStatus.CONFLICT, recorded(
                "error_already_exists_context", **names, context_id=context_id
            )
        now = rfc3339_now()
        self.state.contexts[context_id] = StoredContext(context_id, request.json(), now, now)
        return HTTPStatus.OK, self._context_body(location, store, context_id)

    def get_context(
        self, request: SentRequest, project: str, location: str, store: str, context: str
    ) -> Reply:
        if context not in self.state.contexts:
            return HTTPStatus.NOT_FOUND, recorded(
                "error_not_found_context",
                project_number=PROJECT_NUMBER,
                location=location,
                store=store,
                context_id=context,
            )
        return HTTPStatus.OK, self._context_body(location, store, context)

    def patch_context(
        self, request: SentRequest, project: str, location: str, store: str, context: str
    ) -> Reply:
        if context not in self.state.contexts:
            return self.get_context(request, project, location, store, context)
        stored = self.state.contexts[context]
        body = request.json()
        stored.resource = {**stored.resource, **{k: v for k, v in body.items() if k != "name"}}
        stored.updated_at = rfc3339_now()
        return HTTPStatus.OK, self._context_body(location, store, context)

    def list_contexts(self, request: SentRequest, project: str, location: str, store: str) -> Reply:
        contexts = [self._context_body(location, store, c) for c in self.state.contexts]
        return HTTPStatus.OK, {"contexts": contexts} if contexts else {}

    def add_children(
        self, request: SentRequest, project: str, location: str, store: str, context: str
    ) -> Reply:
        if context not in self.state.contexts:
            return self.get_context(request, project, location, store, context)
        parent = self.state.contexts[context]
        for child in request.json().get("childContexts", []):
            if child.rsplit("/", 1)[-1] not in self.state.contexts:
                return self.get_context(request, project, location, store, child)
            if child not in parent.children:
                parent.children.append(child)
        return HTTPStatus.OK, {}

    def _context_body(self, location: str, store: str, context_id: str) -> dict[str, Any]:
        stored = self.state.contexts[context_id]
        resource = stored.resource
        parents = [
            f"projects/{PROJECT_NUMBER}/locations/{location}/metadataStores/{store}/contexts/"
            f"{other.context_id}"
            for other in self.state.contexts.values()
            if any(child.endswith(f"/contexts/{context_id}") for child in other.children)
        ]
        return recorded(
            "context",
            project_number=PROJECT_NUMBER,
            location=location,
            store=store,
            context_id=context_id,
            display_name=resource.get("displayName", context_id),
            etag=f"ctx{len(stored.updated_at)}",
            create_time=stored.created_at,
            update_time=stored.updated_at,
            parent_contexts=parents,
            schema_title=resource.get("schemaTitle", ""),
            schema_version=resource.get("schemaVersion", ""),
            metadata=resource.get("metadata", {}),
            description=resource.get("description", ""),
        )

    # --- shared -------------------------------------------------------------------------------

    def _apply_aliases(self, model_id: str, target: StoredVersion, aliases: list[str]) -> None:
        """An alias is unique within a model: applying it moves it."""
        for version in self.state.models[model_id]:
            if version is not target:
                version.aliases = [alias for alias in version.aliases if alias not in aliases]
        target.aliases = [*target.aliases, *(a for a in aliases if a not in target.aliases)]

    def _version(self, model_id: str, reference: str) -> StoredVersion | None:
        for version in self.state.models.get(model_id, []):
            if reference in (version.version_id, *version.aliases):
                return version
        return None

    def _body(self, location: str, model_id: str, version: StoredVersion) -> dict[str, Any]:
        resource = version.resource
        return recorded(
            "model",
            project_number=PROJECT_NUMBER,
            location=location,
            model_id=model_id,
            display_name=resource.get("displayName", model_id),
            image_uri=resource.get("containerSpec", {}).get("imageUri", ""),
            create_time=self.state.models[model_id][0].created_at,
            update_time=version.created_at,
            version_time=version.created_at,
            etag=f"AMEw9yP{version.version_id}",
            labels=resource.get("labels", {}),
            artifact_uri=resource.get("artifactUri", ""),
            version_id=version.version_id,
            version_aliases=list(version.aliases),
            version_description=resource.get("versionDescription", ""),
        )

    def _not_found(self, location: str, model: str, alias: str | None) -> Reply:
        if alias and model in self.state.models:
            return HTTPStatus.NOT_FOUND, recorded(
                "error_alias_not_found",
                project_number=PROJECT_NUMBER,
                location=location,
                model_id=model,
                alias=alias,
            )
        return HTTPStatus.NOT_FOUND, recorded("error_not_found_model")


def _respond(routes: _Routes) -> Callable[[SentRequest], HttpReply]:
    def respond(request: SentRequest) -> HttpReply:
        with routes.state._lock:
            routes.state.requests.append(request)
            status, body = routes.handle(request)
        return status, body, {}

    return respond


@contextmanager
def vertex_model_registry(
    state: VertexModelRegistry | None = None,
) -> Iterator[VertexModelRegistry]:
    """The stand-in on 127.0.0.1 (a free port), serving `state`."""
    state = state or VertexModelRegistry()
    handler = json_handler(_respond(_Routes(state)), unquote_path=True)
    with serve_http(handler, name="vertex-standin") as url:
        state.url = url
        yield state
