"""A small Hugging Face Hub-compatible HTTP server for offline tests.

Implements only what ``huggingface_hub`` (``create_repo``, ``create_commit``/``upload_folder``,
``hf_hub_download``, ``HfFileSystem``), ``transformers.from_pretrained`` and ``datasets``
(``push_to_hub``, ``load_dataset``) call:

==========================================================  ======================================
``POST /api/repos/create``                                   create a repo (401 without the token)
``POST /api/validate-yaml``                                  README front matter must be YAML
``GET  /api/whoami-v2``                                      the user of the token
``GET  /api/{type}s/{repo}[/revision/{rev}]``                repo info (sha, siblings, cardData)
``GET  /api/{type}s/{repo}/tree/{rev}[/{path}]``             list a folder (``recursive``)
``POST /api/{type}s/{repo}/paths-info/{rev}``                info on given paths
``POST /api/{type}s/{repo}/preupload/{rev}``                 regular or LFS upload mode per file
``POST /{prefix}{repo}.git/info/lfs/objects/batch``          LFS upload instructions (to this server)
``PUT  /_lfs/upload/{oid}/{nonce}``, ``POST /_lfs/verify``   LFS object upload and verification
``POST /api/{type}s/{repo}/commit/{rev}``                    NDJSON commit (regular + LFS files)
``GET|HEAD /{prefix}{repo}/resolve/{rev}/{path}``            file download (ETag, X-Repo-Commit,
                                                             X-Linked-Etag/-Size, Range)
==========================================================  ======================================

Writes need ``Authorization: Bearer <token>``; reads of a private repo too. Only ``main`` and
commit hashes are revisions; Xet storage is not implemented, so clients must run with
``HF_HUB_DISABLE_XET=1`` (see :func:`point_clients_at`). The server binds 127.0.0.1 on a free
port, caps request bodies at :data:`MAX_BODY_BYTES` and keeps blobs under ``storage_dir``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

MAX_BODY_BYTES = 256 * 1024 * 1024
"""Largest request body the server accepts (413 above)."""

LFS_EXTENSIONS = (".safetensors", ".parquet", ".arrow", ".png", ".jpg", ".jpeg", ".npy", ".bin")
"""Files stored through LFS whatever their size, as the Hub's default ``.gitattributes`` does."""

LFS_MIN_BYTES = 10 * 1024 * 1024
"""Files at least this large go through LFS."""

DEFAULT_GITATTRIBUTES = "".join(
    f"*{extension} filter=lfs diff=lfs merge=lfs -text\n" for extension in LFS_EXTENSIONS
)

_REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_REPO = r"(?P<repo_id>[^/]+/[^/]+)"
_API = rf"^/api/(?P<plural>models|datasets|spaces)/{_REPO}"
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"^/api/repos/create$"), "create_repo"),
    ("POST", re.compile(r"^/api/validate-yaml$"), "validate_yaml"),
    ("GET", re.compile(r"^/api/whoami-v2$"), "whoami"),
    ("GET", re.compile(rf"{_API}(?:/revision/(?P<revision>[^/]+))?$"), "repo_info"),
    ("GET", re.compile(rf"{_API}/tree/(?P<revision>[^/]+)(?:/(?P<path>.*))?$"), "tree"),
    ("POST", re.compile(rf"{_API}/paths-info/(?P<revision>[^/]+)$"), "paths_info"),
    ("POST", re.compile(rf"{_API}/preupload/(?P<revision>[^/]+)$"), "preupload"),
    ("POST", re.compile(rf"{_API}/commit/(?P<revision>[^/]+)$"), "commit"),
    (
        "POST",
        re.compile(
            r"^/(?:(?P<prefix>datasets|spaces)/)?(?P<repo_id>[^/]+/[^/]+)\.git/info/lfs/objects/batch$"
        ),
        "lfs_batch",
    ),
    ("PUT", re.compile(r"^/_lfs/upload/(?P<oid>[0-9a-f]{64})/(?P<nonce>[0-9a-f]+)$"), "lfs_upload"),
    ("POST", re.compile(r"^/_lfs/verify$"), "lfs_verify"),
    (
        "GET",
        re.compile(
            r"^/(?:(?P<prefix>datasets|spaces)/)?(?P<repo_id>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<path>.+)$"
        ),
        "resolve",
    ),
]


class HubError(Exception):
    """An error answered as the Hub does: status, JSON ``{"error": ...}`` and X-Error-* headers."""

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


@dataclass(frozen=True)
class StoredFile:
    """A file of one revision: size, git blob id, content sha256 (its blob key), LFS or not."""

    size: int
    git_oid: str
    sha256: str
    lfs: bool

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.git_oid


@dataclass
class Commit:
    oid: str
    message: str
    files: dict[str, StoredFile]
    created_at: str


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    private: bool
    commits: list[Commit] = field(default_factory=list)

    @property
    def head(self) -> Commit:
        return self.commits[-1]

    def snapshot(self, revision: str) -> Commit:
        if revision == "main":
            return self.head
        for commit in self.commits:
            if commit.oid == revision:
                return commit
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")


def git_blob_oid(content: bytes) -> str:
    """The git object id of a blob (what the Hub returns as the ETag of a regular file)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


class HubServer:
    """Hub-compatible server in a background thread; use as a context manager.

    Args:
        storage_dir: folder for the stored blobs (created).
        token: the only token accepted for writes and private reads.
        user: the name ``whoami`` returns.
    """

    def __init__(self, storage_dir: str | Path, token: str, user: str = "tester"):
        self.storage_dir = Path(storage_dir)
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        self.token = token
        self.user = user
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str, int]] = []
        """``(method, path, status)`` of every request answered, for assertions."""
        self._pending_uploads: dict[str, str] = {}  # nonce -> oid announced by the LFS batch call
        self._lock = threading.RLock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        # A short poll interval keeps shutdown (once per test) fast.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- test helpers
    def files(self, repo_id: str, repo_type: str = "model") -> dict[str, bytes]:
        """Content of every file at the head of ``main``."""
        with self._lock:
            repo = self._repo(repo_type, repo_id)
            return {path: self._read_blob(stored) for path, stored in repo.head.files.items()}

    def lfs_paths(self, repo_id: str, repo_type: str = "model") -> set[str]:
        """Paths stored through LFS at the head of ``main``."""
        with self._lock:
            return {p for p, f in self._repo(repo_type, repo_id).head.files.items() if f.lfs}

    def commit_count(self, repo_id: str, repo_type: str = "model") -> int:
        with self._lock:
            return len(self._repo(repo_type, repo_id).commits)

    # ----------------------------------------------------------------- storage
    def _blob_path(self, sha256: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise HubError(400, f"Invalid LFS oid: {sha256[:80]!r}")
        return self.storage_dir / "blobs" / sha256

    def _store_blob(self, content: bytes) -> str:
        sha256 = hashlib.sha256(content).hexdigest()
        path = self._blob_path(sha256)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
            temporary.write_bytes(content)
            temporary.replace(path)
        return sha256

    def _read_blob(self, stored: StoredFile) -> bytes:
        return self._blob_path(stored.sha256).read_bytes()

    def _repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def _new_commit(self, repo: Repo, message: str, files: dict[str, StoredFile]) -> Commit:
        parent = repo.commits[-1].oid if repo.commits else ""
        digest = hashlib.sha1(
            json.dumps([parent, message, sorted((p, f.etag) for p, f in files.items())]).encode()
        )
        digest.update(secrets.token_bytes(8))  # identical trees in two commits still differ
        commit = Commit(digest.hexdigest(), message, files, time.strftime("%Y-%m-%dT%H:%M:%S.000Z"))
        repo.commits.append(commit)
        return commit

    # ----------------------------------------------------------------- authorization
    def _authorized(self, headers: Any) -> bool:
        value = headers.get("Authorization", "")
        return value.startswith("Bearer ") and secrets.compare_digest(value[7:], self.token)

    def _require_token(self, headers: Any) -> None:
        if not headers.get("Authorization"):
            raise HubError(401, "You must be authenticated to access this resource.")
        if not self._authorized(headers):
            raise HubError(401, "Invalid credentials in Authorization header")

    def _readable_repo(self, repo_type: str, repo_id: str, headers: Any) -> Repo:
        repo = self._repo(repo_type, repo_id)
        if repo.private and not self._authorized(headers):
            raise HubError(401, "Repository not found", "RepoNotFound")
        return repo

    # ----------------------------------------------------------------- endpoints
    def create_repo(self, request: _Request) -> tuple[int, Any]:
        self._require_token(request.headers)
        body = request.json()
        repo_type = body.get("type") or "model"
        if repo_type not in _URL_PREFIXES:
            raise HubError(400, f"Invalid repo type: {repo_type}")
        name = body.get("name") or ""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}", name):
            raise HubError(400, f"Invalid repo name: {name!r}")
        repo_id = f"{body.get('organization') or self.user}/{name}"
        url = f"{self.url}/{_URL_PREFIXES[repo_type]}{repo_id}"
        private = body.get("visibility") == "private" or bool(body.get("private"))
        with self._lock:
            if (repo_type, repo_id) in self.repos:
                return 409, {"error": "You already created this repo", "url": url}
            repo = Repo(repo_id, repo_type, private)
            attributes = DEFAULT_GITATTRIBUTES.encode()
            stored = StoredFile(
                len(attributes), git_blob_oid(attributes), self._store_blob(attributes), False
            )
            self._new_commit(repo, "initial commit", {".gitattributes": stored})
            self.repos[(repo_type, repo_id)] = repo
        return 200, {"url": url, "name": repo_id, "id": repo_id}

    def validate_yaml(self, request: _Request) -> tuple[int, Any]:
        content = request.json().get("content", "")
        match = re.match(r"^---\s*\n(.*?)\n---\s*\n", content, flags=re.DOTALL)
        if match:
            try:
                metadata = yaml.safe_load(match.group(1))
            except yaml.YAMLError as error:
                return 400, {"errors": [{"message": f"Invalid YAML: {error}"}], "warnings": []}
            if metadata is not None and not isinstance(metadata, dict):
                return 400, {"errors": [{"message": "metadata must be a mapping"}], "warnings": []}
        return 200, {"errors": [], "warnings": []}

    def whoami(self, request: _Request) -> tuple[int, Any]:
        self._require_token(request.headers)
        return 200, {
            "type": "user",
            "name": self.user,
            "orgs": [],
            "auth": {"type": "access_token"},
        }

    def repo_info(self, request: _Request) -> tuple[int, Any]:
        repo_type = _REPO_TYPES[request.match["plural"]]
        with self._lock:
            repo = self._readable_repo(repo_type, request.match["repo_id"], request.headers)
            commit = repo.snapshot(request.match["revision"] or "main")
            files = dict(commit.files)
        info: dict[str, Any] = {
            "id": repo.repo_id,
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
            "author": repo.repo_id.split("/")[0],
            "sha": commit.oid,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "lastModified": commit.created_at,
            "createdAt": repo.commits[0].created_at,
            "tags": [],
            "downloads": 0,
            "likes": 0,
            "siblings": [
                {"rfilename": path, "size": stored.size, "blobId": stored.git_oid}
                for path, stored in sorted(files.items())
            ],
        }
        readme = files.get("README.md")
        if readme is not None:
            info["cardData"] = _front_matter(self._read_blob(readme).decode("utf-8", "replace"))
        return 200, info

    def _entry(self, path: str, stored: StoredFile | None, tree_oid: str) -> dict[str, Any]:
        if stored is None:
            return {"type": "directory", "oid": tree_oid, "size": 0, "path": path}
        entry: dict[str, Any] = {
            "type": "file",
            "oid": stored.git_oid,
            "size": stored.size,
            "path": path,
        }
        if stored.lfs:
            entry["lfs"] = {"oid": stored.sha256, "size": stored.size, "pointerSize": 134}
        return entry

    def _folders(self, files: dict[str, StoredFile]) -> set[str]:
        return {
            str(parent)
            for path in files
            for parent in PurePosixPath(path).parents
            if str(parent) != "."
        }

    def tree(self, request: _Request) -> tuple[int, Any]:
        repo_type = _REPO_TYPES[request.match["plural"]]
        folder = (request.match["path"] or "").strip("/")
        recursive = request.query.get("recursive", ["false"])[0].lower() in ("1", "true")
        with self._lock:
            repo = self._readable_repo(repo_type, request.match["repo_id"], request.headers)
            commit = repo.snapshot(request.match["revision"])
            files = dict(commit.files)
        folders = self._folders(files)
        if folder and folder not in folders:
            raise HubError(404, f"Entry not found: {folder}", "EntryNotFound")
        prefix = f"{folder}/" if folder else ""
        entries = []
        for path in sorted(folders | set(files)):
            if not path.startswith(prefix) or (not recursive and "/" in path[len(prefix) :]):
                continue
            entries.append(self._entry(path, files.get(path), _tree_oid(commit.oid, path)))
        return 200, entries

    def paths_info(self, request: _Request) -> tuple[int, Any]:
        repo_type = _REPO_TYPES[request.match["plural"]]
        if request.headers.get("Content-Type", "").startswith("application/json"):
            paths = request.json().get("paths", [])
        else:
            paths = parse_qs(request.body.decode()).get("paths", [])
        with self._lock:
            repo = self._readable_repo(repo_type, request.match["repo_id"], request.headers)
            commit = repo.snapshot(request.match["revision"])
            files = dict(commit.files)
        folders = self._folders(files)
        entries = []
        for path in paths:
            path = path.strip("/")
            if path in files or path in folders:
                entries.append(self._entry(path, files.get(path), _tree_oid(commit.oid, path)))
        return 200, entries

    def preupload(self, request: _Request) -> tuple[int, Any]:
        self._require_token(request.headers)
        repo_type = _REPO_TYPES[request.match["plural"]]
        with self._lock:
            commit = self._repo(repo_type, request.match["repo_id"]).snapshot(
                request.match["revision"]
            )
            files = dict(commit.files)
        answers = []
        for item in request.json().get("files", []):
            path, size = item["path"], int(item["size"])
            sample = base64.b64decode(item.get("sample", ""))
            lfs = size >= LFS_MIN_BYTES or path.lower().endswith(LFS_EXTENSIONS) or b"\0" in sample
            existing = files.get(path)
            answers.append(
                {
                    "path": path,
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": False,
                    "oid": None if existing is None else existing.etag,
                }
            )
        return 200, {"files": answers, "commitOid": commit.oid}

    def lfs_batch(self, request: _Request) -> tuple[int, Any]:
        self._require_token(request.headers)
        repo_type = {"datasets": "dataset", "spaces": "space"}.get(
            request.match["prefix"] or "", "model"
        )
        with self._lock:
            self._repo(repo_type, request.match["repo_id"])
        body = request.json()
        if body.get("operation") != "upload":
            raise HubError(400, "Only the upload operation is implemented")
        objects = []
        for item in body.get("objects", []):
            oid, size = item["oid"], int(item["size"])
            answer: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if not self._blob_path(oid).exists():
                nonce = secrets.token_hex(16)
                with self._lock:
                    self._pending_uploads[nonce] = oid
                answer["actions"] = {
                    "upload": {"href": f"{self.url}/_lfs/upload/{oid}/{nonce}", "header": {}},
                    "verify": {"href": f"{self.url}/_lfs/verify", "header": {}},
                }
            objects.append(answer)
        return 200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}

    def lfs_upload(self, request: _Request) -> tuple[int, Any]:
        oid, nonce = request.match["oid"], request.match["nonce"]
        with self._lock:
            if self._pending_uploads.get(nonce) != oid:
                raise HubError(403, "Unknown or expired upload URL")
        if hashlib.sha256(request.body).hexdigest() != oid:
            raise HubError(400, "Uploaded content does not match its sha256")
        self._store_blob(request.body)
        with self._lock:
            self._pending_uploads.pop(nonce, None)
        return 200, {}

    def lfs_verify(self, request: _Request) -> tuple[int, Any]:
        body = request.json()
        path = self._blob_path(str(body.get("oid", "")))
        if not path.exists() or path.stat().st_size != int(body.get("size", -1)):
            raise HubError(404, "LFS object not found")
        return 200, {}

    def commit(self, request: _Request) -> tuple[int, Any]:
        self._require_token(request.headers)
        repo_type = _REPO_TYPES[request.match["plural"]]
        if request.query.get("create_pr"):
            raise HubError(400, "Pull requests are not implemented")
        lines = [json.loads(line) for line in request.body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The first NDJSON line must be the commit header")
        header = lines[0]["value"]
        with self._lock:
            repo = self._repo(repo_type, request.match["repo_id"])
            if request.match["revision"] != "main":
                raise HubError(400, "Only commits to main are implemented")
            parent = header.get("parentCommit")
            if parent and not repo.head.oid.startswith(parent):
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(repo.head.files)
            for line in lines[1:]:
                key, value = line.get("key"), line.get("value", {})
                path = _checked_path(value.get("path", ""))
                if key == "file":
                    content = base64.b64decode(value["content"])
                    files[path] = StoredFile(
                        len(content), git_blob_oid(content), self._store_blob(content), False
                    )
                elif key == "lfsFile":
                    oid = value["oid"]
                    blob = self._blob_path(oid)
                    if not blob.exists():
                        raise HubError(400, f"LFS file {path} (oid {oid}) was not uploaded")
                    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {blob.stat().st_size}\n"
                    files[path] = StoredFile(
                        blob.stat().st_size, git_blob_oid(pointer.encode()), oid, True
                    )
                elif key == "deletedFile":
                    if files.pop(path, None) is None:
                        raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
                elif key == "deletedFolder":
                    for existing in [p for p in files if p.startswith(path.rstrip("/") + "/")]:
                        del files[existing]
                else:
                    raise HubError(400, f"Unknown commit operation: {key}")
            commit = self._new_commit(repo, header.get("summary") or "", files)
        url = f"{self.url}/{_URL_PREFIXES[repo_type]}{repo.repo_id}/commit/{commit.oid}"
        return 200, {
            "success": True,
            "commitOid": commit.oid,
            "commitUrl": url,
            "pullRequestUrl": None,
        }

    def resolve(self, request: _Request) -> tuple[int, Any]:
        repo_type = {"datasets": "dataset", "spaces": "space"}.get(
            request.match["prefix"] or "", "model"
        )
        with self._lock:
            repo = self._readable_repo(repo_type, request.match["repo_id"], request.headers)
            commit = repo.snapshot(request.match["revision"])
            stored = commit.files.get(request.match["path"])
        if stored is None:
            raise HubError(404, "Entry not found", "EntryNotFound")
        headers = {
            "X-Repo-Commit": commit.oid,
            "ETag": f'"{stored.etag}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if stored.lfs:
            headers["X-Linked-Etag"] = f'"{stored.sha256}"'
            headers["X-Linked-Size"] = str(stored.size)
        content = self._read_blob(stored)
        status = 200
        range_header = request.headers.get("Range")
        if range_header:
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", range_header.strip())
            if not match or not (match.group(1) or match.group(2)):
                raise HubError(400, f"Malformed Range header: {range_header}")
            if match.group(1):
                start = int(match.group(1))
                end = int(match.group(2)) if match.group(2) else len(content) - 1
            else:  # suffix range: the last N bytes
                start, end = max(0, len(content) - int(match.group(2))), len(content) - 1
            if start >= len(content):
                headers["Content-Range"] = f"bytes */{len(content)}"
                return 416, (headers, b"")
            end = min(end, len(content) - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
            content, status = content[start : end + 1], 206
        return status, (headers, content)


def _tree_oid(commit_oid: str, path: str) -> str:
    return hashlib.sha1(f"{commit_oid}:{path}".encode()).hexdigest()


def _front_matter(text: str) -> dict[str, Any] | None:
    match = re.match(r"^---\s*\n(.*?)\n---\s*\n", text, flags=re.DOTALL)
    if not match:
        return None
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


def _checked_path(path: str) -> str:
    parts = PurePosixPath(path).parts
    if not path or path.startswith("/") or ".." in parts or ".git" in parts:
        raise HubError(400, f"Invalid path in repo: {path!r}")
    return path


@dataclass
class _Request:
    match: dict[str, str | None]
    query: dict[str, list[str]]
    headers: Any
    body: bytes

    def json(self) -> dict[str, Any]:
        try:
            value = json.loads(self.body or b"{}")
        except json.JSONDecodeError as error:
            raise HubError(400, f"Request body is not JSON: {error}") from None
        if not isinstance(value, dict):
            raise HubError(400, "Request body must be a JSON object")
        return value


def _make_handler(server: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 60  # seconds a connection may stay silent

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # requests are recorded in server.requests instead of stderr

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks, total = [], 0
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return b"".join(chunks)
                    total += size
                    if total > MAX_BODY_BYTES:
                        raise HubError(413, "Request body too large")
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                raise HubError(413, "Request body too large")
            return self.rfile.read(length) if length else b""

        def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            server.requests.append((self.command, self.path, status))

        def _send_error(self, error: HubError) -> None:
            if error.status == 413:
                self.close_connection = True  # the unread body would poison the connection
            header_text = " ".join(error.message.encode("ascii", "replace").decode().split())
            headers = {"Content-Type": "application/json", "X-Error-Message": header_text}
            if error.code:
                headers["X-Error-Code"] = error.code
            self._send(error.status, headers, json.dumps({"error": error.message}).encode())

        def _dispatch(self) -> None:
            split = urlsplit(self.path)
            path = unquote(split.path)
            method = "GET" if self.command == "HEAD" else self.command
            try:
                body = self._read_body()
                for route_method, pattern, name in _ROUTES:
                    match = pattern.match(path)
                    if match and route_method == method:
                        request = _Request(
                            match.groupdict(), parse_qs(split.query), self.headers, body
                        )
                        status, payload = getattr(server, name)(request)
                        break
                else:
                    raise HubError(404, f"No route for {self.command} {split.path}")
            except HubError as error:
                self._send_error(error)
                return
            except Exception as error:  # a server bug: answer it rather than drop the connection
                self._send_error(HubError(500, f"{type(error).__name__}: {error}"))
                return
            if isinstance(payload, tuple):  # (headers, raw bytes) from resolve
                self._send(status, payload[0], payload[1])
            else:
                self._send(
                    status, {"Content-Type": "application/json"}, json.dumps(payload).encode()
                )

        do_GET = do_HEAD = do_POST = do_PUT = _dispatch

    Handler.__name__ = "HubRequestHandler"
    return Handler


def point_clients_at(monkeypatch: Any, server: HubServer) -> None:
    """Point this process's ``huggingface_hub`` and ``datasets`` at ``server`` (online, no Xet).

    Both libraries read ``HF_ENDPOINT`` and the offline switches at import time, so setting the
    environment variables alone does not reach modules already imported; the module constants are
    patched as well. Subprocesses get the environment variables of :func:`client_environment`.
    """
    import datasets.config
    from huggingface_hub import constants

    for name, value in client_environment(server).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(
        constants,
        "HUGGINGFACE_CO_URL_TEMPLATE",
        server.url + "/{repo_id}/resolve/{revision}/{filename}",
    )
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(datasets.config, "HF_ENDPOINT", server.url)
    monkeypatch.setattr(
        datasets.config,
        "HUB_DATASETS_URL",
        server.url + "/datasets/{repo_id}/resolve/{revision}/{path}",
    )
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", False)


def client_environment(server: HubServer) -> dict[str, str]:
    """Environment variables that point a fresh Python process at ``server``."""
    return {
        "HF_ENDPOINT": server.url,
        "HF_HUB_OFFLINE": "0",
        "HF_DATASETS_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "HF_HUB_DISABLE_XET": "1",
    }
