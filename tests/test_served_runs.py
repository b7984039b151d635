"""A served deployment's runs against real servers: whoever may start a run from the Prefect UI sends params
that are data, never expressions or addresses (issue 19). Runs are created as the UI creates them (the
deployment's create_flow_run API), also with the server's own schema check turned off, which the API
allows any caller; local HTTP servers stand for a secret service (127.0.0.1) and an allowed host
(127.0.0.2, in W2V_SERVE_ALLOWED_HOSTS)."""

from __future__ import annotations

import contextlib
import http.server
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from conftest import make_project_copy, run, tool_env
from test_prefect_flow import api, experiment_names, logs, mlflow_runs, wait_for
from w2vpipe.params import yaml_value

DEPLOYMENT = "served-runs"
SECRET = f"secret-{uuid.uuid4().hex}"  # in the serve process's environment, a file and a local service
TRICKY_WORDS = ["king", "a\\", "it's", "x,y", "[a]", "null", "="]


class Corpora(http.server.ThreadingHTTPServer):
    """/corpus.txt: a small corpus; /secret.txt: SECRET; /redirect.txt: a redirect to `redirect_to`."""

    corpus = b""
    redirect_to = ""
    paths: list[str]


class Handler(http.server.BaseHTTPRequestHandler):
    server: Corpora

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server.paths.append(self.path)
        if self.path == "/redirect.txt":
            self.send_response(302)
            self.send_header("Location", self.server.redirect_to)
            self.end_headers()
            return
        body = {"/corpus.txt": self.server.corpus, "/secret.txt": SECRET.encode()}.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Served:
    api_url: str
    deployment_id: str
    project: Path
    allowed_dir: Path
    secret_service: Corpora  # on 127.0.0.1: not allowed
    allowed_host: Corpora  # on 127.0.0.2: W2V_SERVE_ALLOWED_HOSTS

    def url(self, server: Corpora, path: str) -> str:
        host, port = server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def start(self, name: str, parameters: dict, enforce_schema: bool = True) -> httpx.Response:
        """A run of the deployment, as the UI's Run button creates it. A busy server's 5xx is retried, as
        Prefect's own client does: its SQLite database may be locked by the runs a moment."""
        for _ in range(5):
            response = httpx.post(f"{self.api_url}/deployments/{self.deployment_id}/create_flow_run", timeout=30,
                                  json={"name": name, "parameters": parameters,
                                        "enforce_parameter_schema": enforce_schema})
            if response.status_code < 500:
                break
            time.sleep(1)
        return response

    def finish(self, name: str, parameters: dict, enforce_schema: bool = True) -> dict:
        response = self.start(name, parameters, enforce_schema)
        response.raise_for_status()
        return wait_for(self.api_url, response.json()["id"], time.monotonic() + 400)


@contextlib.contextmanager
def corpora(host: str) -> Iterator[Corpora]:
    server = Corpora((host, 0), Handler)
    server.paths = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, prefect_server: str, shakespeare: Path) -> Iterator[Served]:
    """`python -m pipeline serve` of a project copy, its operator allowing one folder and 127.0.0.2, with
    SECRET in its environment."""
    tmp_path = tmp_path_factory.mktemp("served-runs")
    project = make_project_copy(tmp_path / "project", {"train.epochs": 1, "train.embedding_dim": 16})
    allowed_dir = tmp_path / "corpora"
    allowed_dir.mkdir()
    (tmp_path / "secret.txt").write_text(f"{SECRET}\n")  # beside the allowed folder, not in it
    # The runner looks for new runs every second (default: 10), so each run starts at once.
    env = tool_env(PREFECT_API_URL=prefect_server, W2V_SERVE_ALLOWED_DIRS=str(allowed_dir),
                   W2V_SERVE_ALLOWED_HOSTS="127.0.0.2", SERVE_SECRET=SECRET, PREFECT_RUNNER_POLL_FREQUENCY="1")
    with corpora("127.0.0.1") as secret_service, corpora("127.0.0.2") as allowed_host:
        with shakespeare.open("rb") as source:
            allowed_host.corpus = b"".join(line for _, line in zip(range(2000), source, strict=False))
        allowed_host.redirect_to = f"http://127.0.0.1:{secret_service.server_address[1]}/secret.txt"
        server = subprocess.Popen([sys.executable, "-m", "pipeline", "serve", "--name", DEPLOYMENT], cwd=project,
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while not (found := api(prefect_server, "/deployments/filter",
                                    {"deployments": {"name": {"any_": [DEPLOYMENT]}}})):
                assert server.poll() is None and time.monotonic() < deadline, "deployment never registered"
                time.sleep(1)
            yield Served(prefect_server, found[0]["id"], project, allowed_dir, secret_service, allowed_host)
        finally:
            server.terminate()
            server.wait(timeout=30)


def assert_refused_in_one_line(served: Served, flow_run: dict, expected: str) -> None:
    """The run failed with the one expected line, before DVC ran anything: no experiment, no MLflow run."""
    message = flow_run["state"]["message"]
    assert flow_run["state_type"] == "FAILED", logs(served.api_url, flow_run["id"])
    assert expected in message, message
    assert "\n" not in message and "Traceback" not in message
    assert flow_run["name"] not in experiment_names(served.project)
    assert not (served.project / "mlflow.db").exists() or not mlflow_runs(served.project, flow_run["name"])


def assert_secret_nowhere(served: Served) -> None:
    """No MLflow param, tag or artifact, no experiment's params.yaml and no run's log holds SECRET."""
    from mlflow import MlflowClient

    if (served.project / "mlflow.db").exists():
        client = MlflowClient(tracking_uri=f"sqlite:///{served.project / 'mlflow.db'}")
        for experiment in client.search_experiments():
            for mlflow_run in client.search_runs([experiment.experiment_id]):
                assert SECRET not in json.dumps([mlflow_run.data.params, mlflow_run.data.tags])
    for path in (served.project / "mlartifacts").rglob("*"):
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path
    references = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], served.project).stdout.split()
    for reference in references:
        shown = subprocess.run(["git", "show", f"{reference}:params.yaml"], cwd=served.project, capture_output=True,
                               text=True)
        assert SECRET not in shown.stdout, reference
    flow_runs = api(served.api_url, "/flow_runs/filter", {})
    assert all(SECRET not in logs(served.api_url, flow_run["id"]) for flow_run in flow_runs)


def test_an_interpolation_in_corpus_url_fails_in_one_line_and_reads_nothing(served: Served) -> None:
    """`${oc.decode:'..'}` would have passed the folder check on the literal text, then DVC made it `..`."""
    url = f"{served.allowed_dir}/${{oc.decode:'..'}}/secret.txt"
    flow_run = served.finish("interpolated-url", {"corpus": {"url": url, "sha256": None}})
    assert_refused_in_one_line(served, flow_run, "param corpus.url=" + url[:50])
    assert "it must not contain '${'" in flow_run["state"]["message"]
    assert_secret_nowhere(served)


def test_an_interpolation_in_probe_words_leaks_no_environment(served: Served) -> None:
    words = ["king", "${oc.env:SERVE_SECRET}", "${oc.env:PREFECT_API_URL}"]
    flow_run = served.finish("interpolated-words", {"evaluate": {"probe_words": words, "neighbours": 10}})
    assert_refused_in_one_line(served, flow_run, "word 2 of param evaluate.probe_words, ${oc.env:SERVE_SECRET}, is "
                                                 "invalid: it must not contain '${'")
    assert_secret_nowhere(served)


def test_a_loopback_service_is_refused_before_anything_is_fetched(served: Served) -> None:
    url = served.url(served.secret_service, "/secret.txt")
    flow_run = served.finish("loopback-url", {"corpus": {"url": url, "sha256": None}})
    assert_refused_in_one_line(served, flow_run, f"corpus.url {url} is refused: its host is 127.0.0.1 (loopback)")
    assert "W2V_SERVE_ALLOWED_HOSTS" in flow_run["state"]["message"]
    assert served.secret_service.paths == []
    assert_secret_nowhere(served)


def test_a_redirect_to_a_loopback_service_is_refused_by_the_download_stage(served: Served) -> None:
    """127.0.0.2 is allowed, as a public host would be, so the run starts; its redirect to 127.0.0.1 is
    refused where the download follows it, in the stage."""
    url = served.url(served.allowed_host, "/redirect.txt")
    flow_run = served.finish("redirected-url", {"corpus": {"url": url, "sha256": None}})
    message = flow_run["state"]["message"]
    assert flow_run["state_type"] == "FAILED" and "\n" not in message
    assert (f"stage download failed: corpus.url {url} is refused: it redirects to "
            f"{served.allowed_host.redirect_to}, whose host is 127.0.0.1 (loopback)") in message
    assert served.allowed_host.paths[-1] == "/redirect.txt" and served.secret_service.paths == []
    assert_secret_nowhere(served)


def test_the_form_cannot_name_a_dask_scheduler(served: Served) -> None:
    cluster = {"workers": 0, "scheduler": "tcp://127.0.0.1:8786"}
    refused = served.start("form-scheduler", {"cluster": cluster})
    assert refused.status_code == 409 and "scheduler" in refused.text  # the deployment's schema has no such field
    # With the server's schema check turned off (any API caller may), the flow refuses it itself.
    flow_run = served.finish("api-scheduler", {"cluster": cluster}, enforce_schema=False)
    assert_refused_in_one_line(served, flow_run, "unknown param 'cluster.scheduler'")


def test_a_huge_word_is_refused_in_one_line(served: Served) -> None:
    words = ["king", "k" * 200_000]  # was: OSError, argument list too long
    refused = served.start("huge-word-form", {"evaluate": {"probe_words": words, "neighbours": 10}})
    assert refused.status_code == 409 and "is too long" in refused.text  # the form's schema: maxLength
    flow_run = served.finish("huge-word-api", {"evaluate": {"probe_words": words, "neighbours": 10}},
                             enforce_schema=False)
    assert_refused_in_one_line(served, flow_run, "word 2 of param evaluate.probe_words, " + "k" * 50
                               + "… (200,000 characters), is invalid: it must be at most 100 characters")


def test_words_that_hydra_would_parse_reach_the_run_exactly_from_an_allowed_host(served: Served) -> None:
    """A trailing backslash, a quote, a comma, brackets, `null` and `=` arrive as typed: in the experiment's
    params.yaml, the MLflow run's params and the neighbours list; the corpus comes from the allowed host."""
    url = served.url(served.allowed_host, "/corpus.txt")
    flow_run = served.finish("tricky-words", {"corpus": {"url": url, "sha256": None},
                                              "evaluate": {"probe_words": TRICKY_WORDS, "neighbours": 5}})
    assert flow_run["state_type"] == "COMPLETED", logs(served.api_url, flow_run["id"])
    assert "/corpus.txt" in served.allowed_host.paths
    baseline = run(["git", "rev-parse", "HEAD"], served.project).stdout.strip()
    params = yaml.safe_load(run(["git", "show", f"refs/exps/{baseline[:2]}/{baseline[2:]}/tricky-words:params.yaml"],
                                served.project).stdout)
    assert params["evaluate"]["probe_words"] == TRICKY_WORDS and params["corpus"]["url"] == url
    (mlflow_run,) = mlflow_runs(served.project, "tricky-words")
    assert mlflow_run.data.params["evaluate.probe_words"] == yaml_value(TRICKY_WORDS)
    neighbours = json.loads(run(["git", "show", f"refs/exps/{baseline[:2]}/{baseline[2:]}/tricky-words:"
                                 "metrics/neighbours.json"], served.project).stdout)
    assert set(neighbours["neighbours"]) | set(neighbours["missing"]) == set(TRICKY_WORDS)
    assert {"a\\", "it's", "x,y", "[a]", "="} <= set(neighbours["missing"])  # no words of the corpus, but probed


def test_serve_refuses_a_host_name_in_the_allowed_hosts() -> None:
    """The operator's allowances are addresses: a name, which may resolve elsewhere later, stops `serve` at once."""
    result = run([sys.executable, "-m", "pipeline", "serve"], Path(__file__).resolve().parent.parent,
                 tool_env(W2V_SERVE_ALLOWED_HOSTS="127.0.0.1,intranet.example"), check=False, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: W2V_SERVE_ALLOWED_HOSTS entry 'intranet.example' is not an IP address or "
                                     "network: list addresses (127.0.0.1, 10.0.0.0/24), not names, since what a name "
                                     "resolves to can change")
