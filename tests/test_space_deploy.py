"""The Space deploys as it is: ``spaces_app/`` copied alone to a temporary folder, its
``requirements.txt`` installed from the package index into a fresh virtual environment with an
empty package cache of its own (so nothing an earlier install left on the machine can stand in for
a missing or wrong pin), with the hf_covid wheel the project builds, then started with that
environment's Python against checkpoints pinned by revision on the local Hub-compatible server."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest
import tomllib
import yaml
from app_support import REPO_ROOT, SPACE_DIR, build_tiny_checkpoints, write_test_images
from gradio_client import Client, handle_file
from hub_server import HubServer, client_environment, point_clients_at
from huggingface_hub import HfApi

from hf_covid.benchmarks.app_latency import serve_app_file
from hf_covid.models.labels import RADIOGRAPHY_LABELS

UV = shutil.which("uv")
PIN_LINE = re.compile(r"^[A-Za-z0-9_.\-\[\],]+==")


def lock_pins() -> list[str]:
    """The pinned requirements of the app's extras, exported from uv.lock."""
    export = subprocess.run(
        [
            UV,
            "export",
            "--frozen",
            "--no-hashes",
            "--no-emit-project",
            "--no-dev",
            "--extra",
            "app",
            "--extra",
            "dicom",
            "--no-header",
            "--no-annotate",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [line for line in export.stdout.splitlines() if PIN_LINE.match(line)]


def test_space_requirements_pin_this_version_and_every_package_of_the_lock():
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    lines = (SPACE_DIR / "requirements.txt").read_text().splitlines()

    assert "--find-links wheels" in lines
    assert f"hf_covid[app,dicom]=={version}" in lines
    assert [
        line for line in lines if PIN_LINE.match(line) and "hf_covid" not in line
    ] == lock_pins()


@pytest.mark.slow
def test_space_folder_alone_installs_with_an_empty_cache_and_serves_models_pinned_on_the_hub(
    tmp_path, monkeypatch, request
):
    space, venv, cache = tmp_path / "space", tmp_path / "venv", tmp_path / "uv_cache"
    # Several GB (torch and its CUDA libraries): gone after the test, not kept with pytest's
    # last three temporary folders.
    request.addfinalizer(lambda: [shutil.rmtree(p, ignore_errors=True) for p in (venv, cache)])
    shutil.copytree(SPACE_DIR, space, ignore=shutil.ignore_patterns("wheels", "__pycache__"))
    # A cache of our own, empty: the wheel's build backend and every pinned package come from the
    # index, as on a fresh machine or a Space, never from what `make test`'s own sync cached.
    fresh = {**os.environ, "UV_CACHE_DIR": str(cache)}
    fresh.pop("UV_OFFLINE", None)
    built = subprocess.run(
        [UV, "build", "--wheel", "--out-dir", str(space / "wheels"), str(REPO_ROOT)],
        env=fresh,
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    subprocess.run(
        [UV, "venv", "--quiet", "--python", sys.executable, str(venv)], env=fresh, check=True
    )
    python = venv / "bin" / "python"
    install = subprocess.run(
        [UV, "pip", "install", "--no-deps", "--python", str(python)]
        + ["-r", str(space / "requirements.txt")],
        cwd=tmp_path,  # --find-links wheels is relative to the requirements file, not here
        env=fresh,
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    check = subprocess.run(
        [UV, "pip", "check", "--python", str(python)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    installed = subprocess.run(
        [str(python), "-c", "import hf_covid.app; print(hf_covid.app.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert installed.stdout.startswith(str(venv)), installed.stderr[-3000:]  # the wheel's copy

    token = "hf_deploytest"
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with HubServer(tmp_path / "hub_storage", token=token) as server:
        point_clients_at(monkeypatch, server)
        api = HfApi(endpoint=server.url, token=token)
        models = {}
        for key, folder in build_tiny_checkpoints(tmp_path / "checkpoints").items():
            repo_id = f"tester/tiny-{key.replace('_', '-')}"
            api.create_repo(repo_id)
            commit = api.upload_folder(repo_id=repo_id, folder_path=folder)
            models[key] = {"id": repo_id, "revision": commit.oid}
        # A later commit on main must not change what the Space serves: the revision is pinned.
        api.upload_file(
            path_or_fileobj=b"not a model\n",
            path_in_repo="config.json",
            repo_id="tester/tiny-cnn-lstm",
        )
        (space / "models.yaml").write_text(yaml.safe_dump(models))
        environ = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("HF_COVID_", "PYTHONPATH", "VIRTUAL_ENV"))
        }
        environ |= client_environment(server) | {
            "HF_HOME": str(tmp_path / "hf_home"),
            "GRADIO_TEMP_DIR": str(tmp_path / "gradio"),
        }
        xray = write_test_images(tmp_path / "images")["xray"]

        with serve_app_file(space / "app.py", python=python, environ=environ) as app:
            client = Client(app.url, verbose=False, analytics_enabled=False)
            try:
                label, summary, *_ = client.predict(
                    "cnn_lstm", handle_file(xray), None, api_name="/predict_chest_xray"
                )
            finally:
                client.close()
            log = app.log

    assert label["label"] in RADIOGRAPHY_LABELS
    assert "by the CNN + LSTM" in summary
    assert f"serving cnn_lstm from tester/tiny-cnn-lstm@{models['cnn_lstm']['revision']}" in log
    assert "not serving" not in log  # every model loaded from its pinned revision
