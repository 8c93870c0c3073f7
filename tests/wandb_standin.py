"""A stand-in for W&B's GraphQL service, for the online contract tests.

It runs on 127.0.0.1 and WANDB_BASE_URL points at it, so the whole wandb SDK runs for real:
the Python public API, Artifact and Run code, and the wandb-core service that sends the HTTP
requests. It answers the operations the online backend's calls make, by operation name, from
a small in-memory world of artifacts, collections and registry memberships, and records every
request, so tests assert on what the SDK sent (which artifact id a link names, which alias
moves). It models what those answers need and nothing more; an operation it does not know is
answered with a GraphQL error, so a new SDK query fails a test instead of passing silently.
"""
from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class StandIn:
    def __init__(self):
        self.requests: list[dict] = []  # {"operation", "query", "variables"}
        self.api_key_ok = True
        self.failures: dict[str, str] = {}  # operation -> the GraphQL error W&B answers it with
        self.handlers = {"Viewer": self.viewer, "GetDefaultEntity": self.viewer, "FetchOrgInfoFromEntity": self.org_info,
                         "ArtifactMembershipByName": self.membership_by_name, "AddAliases": self.add_aliases,
                         "DeleteAliases": self.delete_aliases,
                         "LinkArtifact": self.link_artifact,
                         "IsProjectReadOnly": lambda variables: {"project": {"readOnly": False}},
                         "UpdateArtifact": self.update_artifact, "DeleteArtifact": self.delete_artifact,
                         "ArtifactTypeArtifactCollections": self.collections_of_type,
                         "ProjectArtifacts": self.collection_versions,
                         # lineage: the world records no runs (runs are the offline suite's business)
                         "GetSweep": self.get_sweep, "Runs": self.sweep_runs,
                         "RunOutputArtifacts": self.run_outputs, "Run": self.run,
                         "RunInputArtifacts": self.run_inputs, "UseArtifact": self.use_artifact,
                         "ArtifactCreatedBy": lambda variables: {"artifact": {"createdBy": None}},
                         "ArtifactUsedBy": lambda variables: {"artifact": {"usedBy": {"edges": []}}}}
        # The viewer's organizations: name -> its org entity (registry projects live under it).
        self.orgs = {"my-org": "my-org-entity"}
        # The world: artifact versions by id, and collections (a project's artifact sequence or a
        # registry collection) by (entity, project, name), each an ordered list of member ids.
        self.artifacts: dict[str, dict] = {}
        self.collections: dict[tuple[str, str, str], dict] = {}
        self.sweeps: dict[str, dict] = {}  # id -> {"config", "runs": [{"name", "state", "summary", "config", "outputs"}]}
        self.runs: dict[str, dict] = {}  # synced runs by id: {"name", "state", "job_type", "outputs", "inputs"}
        # Artifact contents, for the downloads: each version's manifest, the files by hex MD5, and
        # every file GET (so a test sees what the SDK fetched).
        self.manifests: dict[str, dict] = {}
        self.blobs: dict[str, bytes] = {}
        self.downloads: list[str] = []
        self.handlers["FetchArtifactManifest"] = self.fetch_manifest
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- the world --------------------------------------------------------------------------

    def add_artifact(self, name: str, type: str, digest: str, metadata: dict | None = None, *,
                     entity: str = "me", project: str = "proj", aliases=(), files: dict[str, bytes] | None = None,
                     references: dict[str, dict] | None = None) -> str:
        """Log a version into the project's collection `name`; returns the artifact's id. `files`
        ({name: bytes}) and `references` ({name: {"uri", "digest"}}) make its manifest, as W&B's
        storage policy v1 writes one (files stored by MD5, served at /artifacts/<entity>/<hex MD5>)."""
        artifact_id = f"QXJ0aWZhY3Q6{len(self.artifacts) + 1}"
        contents = {}
        for path, data in (files or {}).items():
            md5 = hashlib.md5(data)
            self.blobs[md5.hexdigest()] = data
            contents[path] = {"digest": base64.b64encode(md5.digest()).decode(), "size": len(data)}
        for path, ref in (references or {}).items():
            contents[path] = {"digest": ref["digest"], "ref": ref["uri"], "size": 1}
        self.manifests[artifact_id] = {"version": 1, "storagePolicy": "wandb-storage-policy-v1",
                                       "storagePolicyConfig": {"storageLayout": "V1"}, "contents": contents}
        collection = self.collections.setdefault((entity, project, name), {"type": type, "members": [], "aliases": {}})
        self.artifacts[artifact_id] = {"id": artifact_id, "name": name, "entity": entity, "project": project,
                                       "type": type, "digest": digest, "metadata": metadata or {},
                                       "version": len(collection["members"]),
                                       "created": f"2026-11-23T10:00:{len(self.artifacts):02d}"}
        self._add_member(collection, artifact_id, aliases)
        return artifact_id

    def link(self, artifact_id: str, collection: str, aliases=(), org_entity: str = "my-org-entity") -> int:
        """Link a version into a registry collection; returns its index there."""
        target = self.collections.setdefault((org_entity, "wandb-registry-model", collection),
                                             {"type": self.artifacts[artifact_id]["type"], "members": [], "aliases": {}})
        return self._add_member(target, artifact_id, aliases)

    @staticmethod
    def _add_member(collection: dict, artifact_id: str, aliases) -> int:
        if artifact_id not in collection["members"]:
            collection["members"].append(artifact_id)
        index = collection["members"].index(artifact_id)
        for alias in ("latest", *aliases):
            collection["aliases"][alias] = index
        return index

    def aliases_of(self, entity: str, project: str, name: str) -> dict[str, int]:
        return dict(self.collections[(entity, project, name)]["aliases"])

    def _resolve(self, entity: str, project: str, name: str) -> tuple[dict | None, int | None]:
        collection_name, _, alias = name.partition(":")
        collection = self.collections.get((entity, project, collection_name))
        if collection is None:
            return None, None
        if alias.startswith("v") and alias[1:].isdigit():
            index = int(alias[1:])
            return collection, index if index < len(collection["members"]) else None
        return collection, collection["aliases"].get(alias or "latest")

    # -- GraphQL shapes -----------------------------------------------------------------------

    @staticmethod
    def _project(entity: str, project: str) -> dict:
        return {"id": f"UHJvamVjdDo{project}", "internalId": project, "name": project, "entity": {"name": entity}}

    def _artifact(self, artifact_id: str) -> dict:
        art = self.artifacts[artifact_id]
        return {
            "__typename": "Artifact", "id": art["id"],
            "artifactSequence": {"__typename": "ArtifactSequence", "name": art["name"],
                                 "project": self._project(art["entity"], art["project"])},
            "versionIndex": art["version"], "artifactType": {"name": art["type"]}, "description": art.get("description"),
            "metadata": json.dumps(art["metadata"]), "ttlDurationSeconds": -1, "ttlIsInherited": True,
            "tags": [], "historyStep": None, "state": "COMMITTED", "size": 100, "digest": art["digest"],
            "commitHash": "abc", "fileCount": 1, "createdAt": art["created"], "updatedAt": art["created"],
            "aliases": self._aliases_everywhere(artifact_id),
        }

    def _aliases_everywhere(self, artifact_id: str) -> list[dict]:
        """The artifact's aliases in every collection that holds it, each with its collection."""
        found = []
        for (entity, project, name), collection in sorted(self.collections.items()):
            if artifact_id not in collection["members"]:
                continue
            index = collection["members"].index(artifact_id)
            for alias, i in sorted(collection["aliases"].items()):
                if i == index:
                    found.append({"__typename": "ArtifactAlias", "id": f"QWxpYXM6{name}{alias}", "alias": alias,
                                  "artifactCollection": self._collection_info(entity, project, name)})
        return found

    def _collection_info(self, entity: str, project: str, name: str) -> dict:
        return {"__typename": "ArtifactPortfolio" if project.startswith("wandb-registry-") else "ArtifactSequence",
                "name": name, "project": self._project(entity, project)}

    @staticmethod
    def _page(edges: list[dict]) -> dict:
        return {"totalCount": len(edges), "pageInfo": {"__typename": "PageInfo", "endCursor": None,
                                                        "hasNextPage": False}, "edges": edges}

    def collections_of_type(self, variables):
        entity, project = variables["entity"], variables["project"]
        if not any(k[:2] == (entity, project) for k in self.collections):
            return {"project": None}
        nodes = [{"node": {**self._collection_info(entity, project, name), "id": f"Q29sbDo{name}",
                           "description": None, "createdAt": "2026-11-23T10:00:00", "updatedAt": "2026-11-23T10:00:00",
                           "type": {"name": c["type"]}, "tags": {"edges": []}}}
                 for (e, p, name), c in sorted(self.collections.items())
                 if (e, p) == (entity, project) and c["type"] == variables["type"]]
        return {"project": {"artifactType": {"artifactCollections": self._page(nodes)}}}

    def collection_versions(self, variables):
        key = (variables["entity"], variables["project"], variables["collection"])
        collection = self.collections.get(key)
        if collection is None:
            return {"project": {"artifactType": {"artifactCollection": None}}}
        edges = [{"version": f"v{i}", "node": self._artifact(artifact_id)}
                 for i, artifact_id in enumerate(collection["members"]) if not self.artifacts[artifact_id].get("deleted")]
        return {"project": {"artifactType": {"artifactCollection": {
            "__typename": "ArtifactPortfolio" if key[1].startswith("wandb-registry-") else "ArtifactSequence",
            "artifacts": self._page(edges[::-1])}}}}

    def _membership(self, key: tuple[str, str, str], index: int) -> dict:
        entity, project, name = key
        collection = self.collections[key]
        artifact_id = collection["members"][index]
        return {
            "__typename": "ArtifactCollectionMembership", "id": f"TWVtYmVyc2hpcDo{name}{index}",
            "versionIndex": index, "createdAt": self.artifacts[artifact_id]["created"],
            "aliases": [{"__typename": "ArtifactAlias", "id": f"QWxpYXM6{alias}", "alias": alias}
                        for alias, i in sorted(collection["aliases"].items()) if i == index],
            "artifactCollection": {"__typename": "ArtifactPortfolio" if project.startswith("wandb-registry-")
                                   else "ArtifactSequence", "name": name, "project": self._project(entity, project)},
            "artifact": self._artifact(artifact_id),
        }

    def add_aliases(self, variables):
        """An alias names one version per collection: setting it moves it (as W&B's server does)."""
        spec = variables["input"]
        for alias in spec["aliases"]:
            key = (alias["entityName"], alias["projectName"], alias["artifactCollectionName"])
            collection = self.collections[key]
            collection["aliases"][alias["alias"]] = collection["members"].index(spec["artifactID"])
        return {"result": {"success": True}}

    def get_sweep(self, variables):
        sweep = self.sweeps.get(variables["name"])
        if sweep is None:
            return {"project": {"sweep": None}}
        return {"project": {"sweep": {
            "__typename": "Sweep", "id": f"U3dlZXA6{variables['name']}", "name": variables["name"],
            "displayName": variables["name"], "method": "bayes", "state": "FINISHED", "description": None,
            "bestLoss": None, "config": json.dumps(sweep["config"]), "createdAt": "2026-11-23T10:00:00",
            "updatedAt": "2026-11-23T10:00:00", "runCount": len(sweep["runs"]), "runCountExpected": None}}}

    def _run_node(self, run: dict) -> dict:
        return {"id": f"UnVuOj{run['name']}", "projectId": 1, "tags": [], "name": run["name"],
                "displayName": run["name"], "sweepName": run.get("sweep"), "state": run["state"], "group": None,
                "jobType": "sweep_trial", "commit": None, "readOnly": False, "createdAt": "2026-11-23T10:00:00",
                "heartbeatAt": "2026-11-23T10:00:00", "description": None, "notes": None, "historyLineCount": 1,
                "user": {"name": "me", "username": "me"}, "config": json.dumps(
                    {k: {"value": v} for k, v in run["config"].items()}),
                "summaryMetrics": json.dumps(run["summary"]), "systemMetrics": "{}"}

    def sweep_runs(self, variables):
        sweep_id = json.loads(variables["filters"])["$and"][0]["sweep"]
        runs = [{**r, "sweep": sweep_id} for r in self.sweeps[sweep_id]["runs"]]
        edges = [{"node": self._run_node(r), "cursor": None} for r in runs]
        return {"project": {"internalId": "1", "runCount": len(runs), "readOnly": False, "runs": {
            "edges": edges, "pageInfo": {"endCursor": None, "hasNextPage": False}}}}

    def add_run(self, run_id: str, job_type: str, outputs=(), inputs=()) -> None:
        """A run as `wandb sync` leaves it: its id, and the artifacts it logged (and used)."""
        self.runs[run_id] = {"name": run_id, "state": "finished", "job_type": job_type, "summary": {}, "config": {},
                             "outputs": list(outputs), "inputs": list(inputs)}

    def _find_run(self, name: str) -> dict | None:
        runs = [*self.runs.values(), *(r for sweep in self.sweeps.values() for r in sweep["runs"])]
        return next((r for r in runs if r["name"] == name), None)

    def run(self, variables):
        run = self._find_run(variables["name"])
        if run is None:
            return {"project": {"run": None}}
        node = {**self._run_node(run), "jobType": run.get("job_type"), "state": run["state"]}
        node.update({"events": None, "historyKeys": None, "fileCount": 0, "updatedAt": "2026-11-23T10:00:00",
                     "sweep": None, "host": None, "runInfo": None})
        return {"project": {"run": node}}

    def use_artifact(self, variables):
        run = self._find_run(variables["runName"])
        if variables["artifactID"] not in run["inputs"]:
            run["inputs"].append(variables["artifactID"])
        art = self.artifacts[variables["artifactID"]]
        return {"useArtifact": {"artifact": {"id": art["id"], "digest": art["digest"], "description": None,
                                             "state": "COMMITTED", "createdAt": art["created"],
                                             "metadata": json.dumps(art["metadata"])}}}

    def run_outputs(self, variables):
        run = self._find_run(variables["run"])
        edges = [{"node": self._artifact(artifact_id)} for artifact_id in run.get("outputs", [])]
        return {"project": {"run": {"artifacts": self._page(edges)}}}

    def run_inputs(self, variables):
        run = self._find_run(variables["run"])
        edges = [{"node": self._artifact(artifact_id)} for artifact_id in run.get("inputs", [])]
        return {"project": {"run": {"artifacts": self._page(edges)}}}

    def delete_aliases(self, variables):
        """An alias taken off a version (Artifact.save() after aliases.remove)."""
        spec = variables["input"]
        for alias in spec["aliases"]:
            key = (alias["entityName"], alias["projectName"], alias["artifactCollectionName"])
            collection = self.collections[key]
            if collection["aliases"].get(alias["alias"]) == collection["members"].index(spec["artifactID"]):
                del collection["aliases"][alias["alias"]]
        return {"result": {"success": True}}

    def update_artifact(self, variables):
        """The description is kept (a model's card, evaluate.py's); metadata, TTL and tags: nothing
        the contract depends on, echoed back."""
        spec = variables["input"]
        if spec.get("description") is not None:
            self.artifacts[spec["artifactID"]]["description"] = spec["description"]
        return {"result": {"artifact": self._artifact(spec["artifactID"])}}

    def delete_artifact(self, variables):
        """W&B keeps the other versions' numbers: the deleted one is only left out of listings."""
        art = self.artifacts[variables["input"]["artifactID"]]
        art["deleted"] = True
        return {"result": {"artifact": {"id": art["id"]}}}

    def link_artifact(self, variables):
        spec = variables["input"]
        index = self.link(spec["artifactID"], spec["artifactPortfolioName"], [a["alias"] for a in spec["aliases"]],
                          org_entity=spec["entityName"])
        return {"result": {"versionIndex": index}}

    def membership_by_name(self, variables):
        entity, project, name = variables["entity"], variables["project"], variables["name"]
        collection, index = self._resolve(entity, project, name)
        if not any(k[:2] == (entity, project) for k in self.collections):
            return {"project": None}
        if collection is None or index is None:
            return {"project": {"artifactCollectionMembership": None}}
        return {"project": {"artifactCollectionMembership": self._membership((entity, project, name.partition(":")[0]), index)}}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "StandIn":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def operations(self) -> list[str]:
        return [r["operation"] for r in self.requests]

    # -- answers --------------------------------------------------------------------------

    def fetch_manifest(self, variables):
        return {"artifact": {"currentManifest": {"file": {"directUrl": f"{self.url}/manifests/{variables['id']}"}}}}

    def viewer(self, variables):
        return {"viewer": {"id": "VXNlcjox", "entity": "me", "username": "me", "email": "me@example.com",
                           "flags": None, "teams": {"edges": [{"node": {"name": "me"}}]}}}

    def org_info(self, variables):
        orgs = [{"name": name, "orgEntity": {"name": entity}} for name, entity in self.orgs.items()]
        return {"entity": {"organization": None, "user": {"organizations": orgs}}}

    def answer(self, doc: dict) -> tuple[int, dict]:
        operation = doc.get("operationName") or _operation_name(doc.get("query", ""))
        self.requests.append({"operation": operation, "query": doc.get("query", ""),
                              "variables": doc.get("variables") or {}})
        if operation in self.failures:
            return 200, {"data": None, "errors": [{"message": self.failures[operation]}]}
        handler = self.handlers.get(operation)
        if handler is None:
            return 200, {"data": None, "errors": [{"message": f"stand-in: operation {operation!r} is not modelled"}]}
        return 200, {"data": handler(doc.get("variables") or {})}

    def _handler_class(self):
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if not self.path.startswith("/graphql"):
                    status, payload = 200, {}
                elif not standin.api_key_ok:
                    status, payload = 401, {"errors": [{"message": "user is not logged in"}]}
                else:
                    status, payload = standin.answer(json.loads(body))
                out = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def do_GET(self):  # a manifest (its directUrl), or a file by its hex MD5 (storage layout V1)
                standin.downloads.append(self.path)
                parts = self.path.split("?")[0].strip("/").split("/")
                if parts[0] == "manifests" and parts[-1] in standin.manifests:
                    status, out = 200, json.dumps(standin.manifests[parts[-1]]).encode()
                elif parts[0] == "artifacts" and parts[-1] in standin.blobs:
                    status, out = 200, standin.blobs[parts[-1]]
                else:
                    status, out = 404, b"not found"
                self.send_response(status)
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):
                pass

        return Handler


def _operation_name(query: str) -> str | None:
    words = query.replace("(", " ").replace("{", " ").split()
    for keyword in ("query", "mutation"):
        if keyword in words:
            index = words.index(keyword)
            return words[index + 1] if index + 1 < len(words) else None
    return None
